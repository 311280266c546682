// Three routers on a real etcd, instances registered as an agent would (ready records
// pointing at local upstreams that check the sidecar credential, and one behind the real
// sidecar): sessions pinned to one instance whichever router serves them, the official
// openai client streaming through the router, a WebSocket echo, a router process killed
// mid-stream while the session carries on through another router.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { Registry, instanceKey, parseServiceSpec, type HostSession, type InstanceRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter, type WarmpoolRouter } from '@warmpool/router';
import { startSidecar } from '@warmpool/sidecar';
import { eventually, freePort, infraSkip, repoRoot, startEtcd, testRunId } from '../src/index.js';
import { startUpstream, type Upstream } from '../bench/router-upstream.js';

interface RouterHandle { app: WarmpoolRouter; url: string; registry: Registry; store: EtcdKvStore }

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

t.test('router cluster on real etcd', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  const prefix = `/wp-${testRunId()}/`;
  const agentStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const agent = new Registry(agentStore, { prefix });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 60, maxLifetimeSec: 3600 } });
  if (!spec.ok) throw new Error('spec');
  await agent.putService(spec.spec);
  const secret = await agent.clusterSecret();
  const host: HostSession = await agent.openHost({
    id: 'e2e-host', address: '127.0.0.1', capacity: { instances: 100, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'e2e',
  }, 10);
  const upstreams: Upstream[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  let n = 0;
  const register = async (id: string, address: string): Promise<void> => {
    const rec: InstanceRecord = {
      id, service: 'chatbot', host: 'e2e-host', state: 'ready', address, containerId: `c-${id}`, slot: null,
      createdAt: Date.now(), readyAt: Date.now(), bootMs: 100,
    };
    await host.putInstance(rec);
  };
  const addInstance = async (): Promise<Upstream> => {
    const id = `e2e-${++n}`;
    const u = await startUpstream({ id, instanceKey: instanceKey(secret, id) });
    upstreams.push(u);
    await register(id, u.address);
    return u;
  };
  for (let i = 0; i < 30; i++) await addInstance();

  const routers: RouterHandle[] = [];
  for (let i = 0; i < 3; i++) {
    const store = new EtcdKvStore({ endpoints: etcd.endpoints });
    const registry = new Registry(store, { prefix, touchFlushMs: 200 });
    const app = buildRouter({ registry });
    await app.listen({ port: 0, host: '127.0.0.1' });
    routers.push({ app, registry, store, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` });
  }
  t.teardown(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    for (const r of routers) { await r.app.close(); await r.registry.close(); await r.store.close(); }
    await host.close({ revoke: true }).catch(() => undefined);
    await agent.close();
    await agentStore.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await etcd.stop();
  });
  await eventually(async () => {
    for (const r of routers) {
      const res = await fetch(`${r.url}/readyz`);
      if (res.status !== 200) return false;
      if ((await r.app.warmpool.directory.cache()).ready.count('chatbot') !== 30) return false;
    }
    return true;
  }, { timeoutMs: 15_000, what: 'routers see the pool' });

  const claim = async (r: RouterHandle): Promise<{ sessionId: string; instanceId: string }> => {
    const res = await fetch(`${r.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
    if (res.status !== 201) throw new Error(`claim: ${res.status} ${await res.text()}`);
    return (await res.json()) as { sessionId: string; instanceId: string };
  };

  await t.test('many concurrent sessions, each pinned to its instance through any router', async (t) => {
    const sessions = await Promise.all(Array.from({ length: 18 }, (_, i) => claim(routers[i % 3]!)));
    t.equal(new Set(sessions.map((s) => s.instanceId)).size, 18, '18 sessions, 18 distinct instances');
    const mismatches: string[] = [];
    await Promise.all(sessions.map(async (s, i) => {
      for (let k = 0; k < 6; k++) {
        const r = routers[(i + k + 1) % 3]!; // starts on a router that did not create it
        const res = k % 2 === 0
          ? await fetch(`${r.url}/v1/sessions/${s.sessionId}/proxy/who?k=${k}`)
          : await fetch(`${r.url}/who`, { headers: { 'x-warmpool-session': s.sessionId } });
        const body = await json(res);
        if (res.status !== 200 || res.headers.get('x-instance-id') !== s.instanceId || body.instanceId !== s.instanceId) {
          mismatches.push(`${s.sessionId} via router ${(i + k + 1) % 3}: ${res.status} ${res.headers.get('x-instance-id')} != ${s.instanceId}`);
        }
      }
    }));
    t.same(mismatches, [], 'every request of every session reached its own instance');
  });

  await t.test('the official openai client streams a chat completion through the router', async (t) => {
    const s = await claim(routers[0]!);
    const viaPath = new OpenAI({ baseURL: `${routers[1]!.url}/v1/sessions/${s.sessionId}/proxy/v1`, apiKey: 'not-used', maxRetries: 0 });
    const stream = await viaPath.chat.completions.create({ model: 'warmpool-test', messages: [{ role: 'user', content: 'tell me a story' }], stream: true });
    const deltas: string[] = [];
    for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? '');
    t.ok(deltas.length >= 5, `${deltas.length} chunks streamed`);
    t.equal(deltas.join(''), `instance ${s.instanceId} heard: tell me a story`);

    const viaHeader = new OpenAI({ baseURL: `${routers[2]!.url}/v1`, apiKey: 'not-used', maxRetries: 0, defaultHeaders: { 'X-Warmpool-Session': s.sessionId } });
    const done = await viaHeader.chat.completions.create({ model: 'warmpool-test', messages: [{ role: 'user', content: 'again' }] });
    t.equal(done.choices[0]?.message.content, `instance ${s.instanceId} heard: again`, 'header routing, non-streamed');
  });

  await t.test('through the real sidecar: router credential accepted, anything else refused', async (t) => {
    const id = `e2e-sidecar-${++n}`;
    const app = await startUpstream({ id });
    upstreams.push(app);
    const sidecar = await startSidecar({
      instanceId: id, instanceKey: instanceKey(secret, id), listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port },
      readiness: { path: '/health', expectStatus: 200, intervalMs: 50, timeoutMs: 1000, bootTimeoutMs: 30_000, failureThreshold: 3 },
    });
    closers.push(() => sidecar.close());
    const direct = await fetch(`http://127.0.0.1:${sidecar.port}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'x-warmpool-credential': 'forged.x' } });
    t.ok(direct.status >= 400 && direct.status < 500, `a forged credential at the sidecar: ${direct.status}`);
    await direct.arrayBuffer();
    // Use up the pool so the next claim lands on the sidecar instance.
    await register(id, `127.0.0.1:${sidecar.port}`);
    let s: { sessionId: string; instanceId: string } | undefined;
    const extra: string[] = [];
    for (let i = 0; i < 40 && !s; i++) {
      const c = await claim(routers[i % 3]!);
      if (c.instanceId === id) s = c; else extra.push(c.sessionId);
    }
    for (const e of extra) await fetch(`${routers[0]!.url}/v1/sessions/${e}`, { method: 'DELETE' });
    // Nothing recycles ended sessions' instances here (no agent): refill for the tests below.
    for (let i = 0; i < 4; i++) await addInstance();
    t.ok(s, 'claimed the sidecar instance');
    if (!s) return;
    const client = new OpenAI({ baseURL: `${routers[2]!.url}/v1/sessions/${s.sessionId}/proxy/v1`, apiKey: 'not-used', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'via sidecar' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    t.equal(text, `instance ${id} heard: via sidecar`, 'router -> sidecar -> app, streamed');
  });

  await t.test('a WebSocket echo through the router (path and header)', async (t) => {
    const s = await claim(routers[1]!);
    const talk = (url: string, headers: Record<string, string> = {}): Promise<string[]> => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      const got: string[] = [];
      ws.on('message', (d) => {
        got.push(d.toString());
        if (got.length === 1) ws.send('ping');
        else if (got.length === 2) ws.send(Buffer.from([1, 2, 3]), { binary: true });
        else { ws.close(); resolve(got); }
      });
      ws.on('error', reject);
      setTimeout(() => { ws.terminate(); reject(new Error(`ws timeout, got ${JSON.stringify(got)}`)); }, 10_000).unref();
    });
    const a = await talk(`${routers[0]!.url.replace('http', 'ws')}/v1/sessions/${s.sessionId}/proxy/chat`);
    t.same(a.slice(0, 2), [`hello from ${s.instanceId}`, `${s.instanceId}: ping`], 'path: greeting and echo from its instance');
    t.equal(a[2], '\u0001\u0002\u0003', 'binary frame echoed');
    const b = await talk(`${routers[2]!.url.replace('http', 'ws')}/chat`, { 'X-Warmpool-Session': s.sessionId });
    t.same(b.slice(0, 2), [`hello from ${s.instanceId}`, `${s.instanceId}: ping`], 'header: same instance');
    const bad = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${routers[0]!.url.replace('http', 'ws')}/v1/sessions/${'A'.repeat(22)}/proxy/chat`);
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
      ws.on('error', () => resolve(-1));
    });
    t.equal(bad, 404, 'an unknown session cannot open a WebSocket');
  });

  await t.test('DELETE through one router: 410 on the others; the instance is not reachable any more', async (t) => {
    const s = await claim(routers[0]!);
    const del = await fetch(`${routers[1]!.url}/v1/sessions/${s.sessionId}`, { method: 'DELETE' });
    t.equal(del.status, 204);
    for (const r of routers) {
      await eventually(async () => (await fetch(`${r.url}/v1/sessions/${s.sessionId}/proxy/x`)).status === 410, { timeoutMs: 5000, what: '410 everywhere' });
    }
    t.pass('410 on every router');
  });

  await t.test('a router killed mid-stream: a clean error, and the session carries on through another router', async (t) => {
    const port = await freePort();
    const child: ChildProcess = spawn(process.execPath, [path.join(repoRoot, 'router/dist/src/main.js')], {
      env: {
        ...process.env, WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: prefix,
        WARMPOOL_ROUTER_HOST: '127.0.0.1', WARMPOOL_ROUTER_PORT: String(port), WARMPOOL_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    closers.push(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); } });
    const url = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${url}/readyz`)).status === 200, { timeoutMs: 15_000, what: `child router ready ${stderr}` });
    const res = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
    const created = await res.text();
    t.equal(res.status, 201, `new session through the child router: ${created}`);
    const s = JSON.parse(created) as { sessionId: string; instanceId: string };
    const stream = await fetch(`${url}/v1/sessions/${s.sessionId}/proxy/slow-sse?n=500&gapMs=20`);
    const reader = stream.body!.getReader();
    const first = await reader.read();
    t.match(new TextDecoder().decode(first.value), /data: \{"i":0\}/, 'stream started through the child router');
    child.kill('SIGKILL');
    const outcome = await (async () => {
      try {
        for (let i = 0; i < 10_000; i++) {
          const r = await reader.read();
          if (r.done) return 'ended without [DONE]';
          if (new TextDecoder().decode(r.value).includes('[DONE]')) return 'completed?!';
        }
        return 'still streaming';
      } catch (err) {
        return `error: ${(err as Error).message}`;
      }
    })();
    t.match(outcome, /^error: /, `the client sees an error (${outcome}), not a silent truncation or a hang`);
    const again = await fetch(`${routers[2]!.url}/v1/sessions/${s.sessionId}/proxy/after`);
    t.equal(again.status, 200, 'the session carries on through another router');
    t.equal(again.headers.get('x-instance-id'), s.instanceId, 'on the same instance');
    const resumed = await fetch(`${routers[0]!.url}/v1/sessions/${s.sessionId}/proxy/slow-sse?n=3&gapMs=5`);
    t.match(await resumed.text(), /\[DONE\]/, 'and can stream again');
  });
});
