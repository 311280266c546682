// `warmpool router --consul-agent`: the router's Consul check follows its own /readyz, so
// Consul DNS (`warmpool-router.service.consul`) only names routers that can serve. A router
// started while etcd is unreachable is registered but critical; once etcd is reachable it
// turns ready and passing by itself (no request has to wake it). When its link to etcd
// drops later, it is degraded: the check turns warning, established sessions are still
// served from its copy of the registry, new sessions get a clear 503; once the link is back
// it is passing again. SIGTERM deregisters it.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, freePort, infraSkip, killOnExit, repoRoot, startConsul, startEtcd, startTcpProxy, testRunId } from '../src/index.js';

interface HealthEntry { Service: { Port: number; Address: string }; Checks: { CheckID: string; Status: string }[] }
interface AgentCheck { CheckID: string; ServiceName: string; Status: string; Output: string }

t.test('the router\'s Consul check follows /readyz', { skip: infraSkip('etcd', 'consul') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  // etcd behind a cuttable link, cut before the router starts.
  const link = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(etcd.endpoints[0]!).port) });
  t.teardown(() => link.close());
  link.suspend();

  const prefix = `/wp-${testRunId()}/`;
  const port = await freePort();
  const proc = killOnExit(spawn(process.execPath, [
    path.join(repoRoot, 'cli', 'bin', 'warmpool.js'), 'router', '--etcd', link.url, '--prefix', prefix,
    '--listen', '127.0.0.1', '--port', String(port), '--consul-agent', `127.0.0.1:${consul.httpPort}`, '--log-level', 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'WARMPOOL_ROUTER_WORKERS')) }));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(async () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); await exited; });
  await eventually(() => /router listening/.test(out) || (proc.exitCode !== null ? Promise.reject(new Error(out)) : false), { timeoutMs: 20_000, what: 'router listening' });

  const health = async (): Promise<HealthEntry[]> => (await (await fetch(`${consul.url}/v1/health/service/warmpool-router`)).json()) as HealthEntry[];
  // The local agent's view: Consul copies a check's output to the catalog only when its
  // status changes (or every few minutes), the agent has it at once.
  const ttlCheck = async (): Promise<AgentCheck | undefined> => {
    const checks = (await (await fetch(`${consul.url}/v1/agent/checks`)).json()) as Record<string, AgentCheck>;
    return Object.values(checks).find((c) => c.ServiceName === 'warmpool-router' && c.CheckID.endsWith(':ttl'));
  };

  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 503, 'without etcd the router says it is not ready');
  // A new TTL check starts critical with no output: wait for the router's own verdict.
  const critical = await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'critical' && c.Output !== '' ? c : false; }, { timeoutMs: 20_000, what: 'check critical' });
  t.match(critical.Output, /router not ready: HTTP 503, registry syncing/, `the check says why (${critical.Output})`);
  t.equal((await health())[0]?.Service.Port, port, 'registered with its port all the same');

  link.resume();
  const passing = await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'passing' ? c : false; }, { timeoutMs: 40_000, what: 'check passing once etcd is reachable' });
  t.match(passing.Output, /router ready/, 'passing once etcd is reachable, with no request needed to wake the router');
  t.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200, '/readyz agrees');


  // An instance of our own (a plain HTTP server registered as ready) and a session on it.
  const upstream = createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ path: req.url })); });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 0, session: { idleTimeoutSec: 60, maxLifetimeSec: 600 } });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const hs = await reg.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 9, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' });
  t.teardown(() => hs.close({ revoke: true }));
  const upstreamAddr = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  await hs.putInstance({ id: 'i1', service: 'chatbot', host: 'h1', state: 'ready', address: upstreamAddr, containerId: '', slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });
  await hs.putInstance({ id: 'i2', service: 'chatbot', host: 'h1', state: 'ready', address: upstreamAddr, containerId: '', slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });
  const router = `http://127.0.0.1:${port}`;
  const newSession = (): Promise<Response> => fetch(`${router}/v1/sessions?wait=0`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }) });
  const created = await eventually(async () => { const r = await newSession(); return r.status === 201 ? (await r.json()) as { sessionId: string } : false; }, { timeoutMs: 10_000, what: 'a session' });
  const viaSession = (): Promise<Response> => fetch(`${router}/v1/sessions/${created.sessionId}/proxy/hello`);
  const first = await viaSession();
  t.equal(first.status, 200, `the session is served (${first.status} ${await first.text()})`);

  link.suspend();
  const warning = await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'warning' ? c : false; }, { timeoutMs: 30_000, what: 'check warning while etcd is cut off' });
  t.match(warning.Output, /router degraded: registry link down/, `the check says why (${warning.Output})`);
  const degraded = await fetch(`${router}/readyz`);
  t.equal(degraded.status, 200, '/readyz answers 200 while degraded: the router still serves');
  t.match(await degraded.json(), { status: 'degraded', registry: 'disconnected', newSessions: false });
  t.equal((await fetch(`${router}/readyz?strict=true`)).status, 503, '/readyz?strict=true answers 503 while degraded');
  const bad = await fetch(`${router}/readyz?strict=maybe`);
  t.equal(bad.status, 400, 'a malformed strict flag is a 400');
  t.match(await bad.json(), { error: { message: /strict/ } }, 'naming the field');
  t.match(await (await fetch(`${router}/metrics`)).text(), /^warmpool_router_registry_connected 0$/m, 'the metric says disconnected');
  const served = await viaSession();
  t.same([served.status, await served.json()], [200, { path: '/hello' }], 'the established session is still served from the copy of the registry');
  const t0 = Date.now();
  const refused = await newSession();
  const refusedMs = Date.now() - t0;
  t.equal(refused.status, 503, `a new session gets 503 (after ${refusedMs} ms)`);
  t.ok(refused.headers.get('retry-after'), 'with Retry-After');
  t.match(await refused.json(), { error: { code: 'WARMPOOL_REGISTRY_UNAVAILABLE' } }, 'saying the registry is unavailable');

  link.resume();
  await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'passing' ? c : false; }, { timeoutMs: 40_000, what: 'check passing once the link is back' });
  t.match(await (await fetch(`${router}/readyz`)).json(), { status: 'ready' }, 'ready again');
  t.equal((await newSession()).status, 201, 'new sessions are claimed again');
  t.match(await (await fetch(`${router}/metrics`)).text(), /^warmpool_router_registry_connected 1$/m, 'the metric says connected');

  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
  t.same(await health(), [], 'deregistered');
});
