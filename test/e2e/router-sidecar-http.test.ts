// The HTTP hops Warmpool owns (client -> router -> sidecar -> app), against the real router
// on real etcd and the real sidecar in front of test apps on 127.0.0.1. Regression tests of
// issue 13: `Expect: 100-continue` answered 502; an app that closes idle keep-alive
// connections made sessions see 502 "socket hang up"; an HTTP/2 cleartext upgrade offer
// (`curl --http2`) killed the connection. Each is pinned on both proxied forms (path, and
// header/cookie) with its siblings.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { Registry, instanceKey, parseServiceSpec, type HostSession } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { startSidecar } from '@warmpool/sidecar';
import { infraSkip, startEtcd, testRunId } from '../src/index.js';

interface TestApp { port: number; requests: { method: string; url: string; body: string; headers: http.IncomingHttpHeaders }[]; close(): Promise<void> }

/**
 * An app that echoes each request as JSON. `idleCloseMs`: it closes a connection idle this
 * long after its last response (as uvicorn does, with no Keep-Alive hint); `dropIdleMs`: a
 * request arriving on a connection idle this long is dropped with the connection.
 */
async function startApp(opts: { idleCloseMs?: number; dropIdleMs?: number } = {}): Promise<TestApp> {
  const requests: TestApp['requests'] = [];
  const idleSince = new WeakMap<Socket, number>();
  const server = http.createServer((req, res) => {
    const socket = req.socket;
    const since = idleSince.get(socket);
    if (opts.dropIdleMs !== undefined && since !== undefined && Date.now() - since >= opts.dropIdleMs) {
      socket.destroy();
      return;
    }
    idleSince.delete(socket);
    if (req.url === '/health') { res.end('ok'); return; }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method ?? '', url: req.url ?? '', body, headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, body, upgrade: req.headers.upgrade ?? null, expect: req.headers.expect ?? null }));
    });
    res.on('finish', () => {
      idleSince.set(socket, Date.now());
      if (opts.idleCloseMs !== undefined) {
        const at = Date.now();
        setTimeout(() => { if (idleSince.get(socket) === at) socket.destroy(); }, opts.idleCloseMs).unref();
      }
    });
  });
  // No keep-alive timeout of Node's own, hence no Keep-Alive hint: the app closes when it likes.
  server.keepAliveTimeout = 0;
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => new Promise<void>((r) => { wss.close(); server.closeAllConnections(); server.close(() => r()); }),
  };
}

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One HTTP/1.1 request with node:http (exact headers, Expect and Upgrade included). */
function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false });
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); reject(new Error(`unexpected upgrade ${res.statusCode}`)); });
    req.on('error', reject);
    const expectsContinue = /100-continue/i.test(opts.headers?.expect ?? opts.headers?.Expect ?? '');
    if (expectsContinue) req.on('continue', () => req.end(opts.body));
    else req.end(opts.body);
  });
}

t.test('router -> sidecar -> app hops', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  const prefix = `/wp-${testRunId()}/`;
  const agentStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const agent = new Registry(agentStore, { prefix });
  const spec = parseServiceSpec({ name: 'hops', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 300, maxLifetimeSec: 3600 } });
  if (!spec.ok) throw new Error('spec');
  await agent.putService(spec.spec);
  const secret = await agent.clusterSecret();
  const host: HostSession = await agent.openHost({
    id: 'hops-host', address: '127.0.0.1', capacity: { instances: 100, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'e2e',
  }, 10);
  const routerStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const registry = new Registry(routerStore, { prefix, touchFlushMs: 200 });
  const router = buildRouter({ registry });
  await router.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(router.server.address() as AddressInfo).port}`;
  const closers: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await router.close();
    await registry.close();
    await routerStore.close();
    await host.close({ revoke: true }).catch(() => undefined);
    await agent.close();
    await agentStore.close();
    await etcd.stop();
  });

  let n = 0;
  /** A test app behind a real sidecar, registered ready and claimed by a new session. */
  const session = async (app: TestApp): Promise<string> => {
    const id = `hop-${++n}`;
    const sidecar = await startSidecar({
      instanceId: id, instanceKey: instanceKey(secret, id), listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port },
      readiness: { path: '/health', expectStatus: 200, intervalMs: 50, timeoutMs: 1000, bootTimeoutMs: 30_000, failureThreshold: 3 },
    });
    closers.push(() => sidecar.close());
    await host.putInstance({
      id, service: 'hops', host: 'hops-host', state: 'ready', address: `127.0.0.1:${sidecar.port}`, containerId: `c-${id}`, slot: null,
      createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
    });
    const res = await request(`${base}/v1/sessions?wait=10`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"hops"}' });
    if (res.status !== 201) throw new Error(`claim: ${res.status} ${res.body}`);
    const s = JSON.parse(res.body) as { sessionId: string; instanceId: string };
    if (s.instanceId !== id) throw new Error(`claimed ${s.instanceId}, not ${id}`);
    return s.sessionId;
  };
  /** The two proxied forms of `path` for session `sid`: by path, and by header. */
  const forms = (sid: string, path: string): { name: string; url: string; headers: Record<string, string> }[] => [
    { name: 'path form', url: `${base}/v1/sessions/${sid}/proxy${path}`, headers: {} },
    { name: 'header form', url: `${base}${path}`, headers: { 'x-warmpool-session': sid } },
    { name: 'cookie form', url: `${base}${path}`, headers: { cookie: `warmpool_session=${sid}` } },
  ];

  const echo = await startApp();
  closers.push(() => echo.close());
  const sid = await session(echo);

  await t.test('Expect: 100-continue reaches the app with its body, and the client gets its answer', async (t) => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2048) }] });
    for (const f of forms(sid, '/echo')) {
      const res = await request(f.url, { method: 'POST', headers: { ...f.headers, 'content-type': 'application/json', expect: '100-continue' }, body });
      t.equal(res.status, 200, `${f.name}: ${res.body.slice(0, 200)}`);
      if (res.status !== 200) continue;
      const got = JSON.parse(res.body) as { body: string; expect: string | null };
      t.equal(got.body, body, `${f.name}: the app received the whole body`);
      t.equal(got.expect, null, `${f.name}: the expectation was met by Warmpool, not passed on`);
    }
    // Chunked, as curl sends an upload of unknown length.
    const res = await request(`${base}/v1/sessions/${sid}/proxy/echo`, { method: 'PUT', headers: { expect: '100-continue', 'transfer-encoding': 'chunked' }, body: 'chunked body' });
    t.equal(res.status, 200, `chunked with Expect: ${res.body.slice(0, 200)}`);
    t.equal((JSON.parse(res.body) as { body: string }).body, 'chunked body');
  });

  await t.test('an expectation Warmpool cannot meet is refused with 417, never blamed on the instance', async (t) => {
    for (const f of forms(sid, '/echo')) {
      const res = await request(f.url, { method: 'POST', headers: { ...f.headers, expect: 'something-else' }, body: 'x' });
      t.equal(res.status, 417, f.name);
    }
  });

  await t.test('an h2c upgrade offer (curl --http2) is answered over HTTP/1.1, GET and POST, both forms', async (t) => {
    const offers: Record<string, string>[] = [
      { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' },
      { connection: 'upgrade', upgrade: 'h2c' },
      { connection: 'keep-alive, Upgrade', upgrade: 'TLS/1.2, HTTP/1.1' },
      { connection: 'Upgrade', upgrade: 'foo/2' },
      { connection: 'upgrade' },
      { upgrade: 'websocket' },
      { connection: 'Upgrade', upgrade: 'websocket' }, // a WebSocket handshake must be a GET: as a POST it is plain HTTP
    ];
    const before = echo.requests.length;
    let sent = 0;
    for (const offer of offers) {
      for (const f of forms(sid, '/v1/models')) {
        for (const method of ['GET', 'POST']) {
          if (offer.upgrade === 'websocket' && offer.connection && method === 'GET') continue;
          const what = `${f.name} ${method} ${JSON.stringify(offer)}`;
          const res = await request(f.url, { method, headers: { ...f.headers, ...offer }, ...(method === 'POST' ? { body: '{"q":1}' } : {}) })
            .catch((err: Error) => ({ status: 0, headers: {}, body: err.message }));
          sent++;
          t.equal(res.status, 200, `${what}: ${res.body.slice(0, 120)}`);
          if (res.status !== 200) continue;
          const got = JSON.parse(res.body) as { method: string; body: string; upgrade: string | null };
          t.same([got.method, got.upgrade], [method, null], `${what}: reached the app as plain HTTP/1.1`);
          if (method === 'POST') t.equal(got.body, '{"q":1}', `${what}: with its body`);
        }
      }
    }
    t.equal(echo.requests.length - before, sent, 'every request reached the app once');
  });

  await t.test('the connection carries on after an upgrade offer answered as HTTP/1.1', async (t) => {
    const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => keep.destroy());
    const url = `${base}/v1/sessions/${sid}/proxy/one`;
    const a = await request(url, { agent: keep, headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' } });
    const b = await request(`${base}/v1/sessions/${sid}/proxy/two`, { agent: keep });
    t.same([a.status, b.status], [200, 200]);
    t.equal((JSON.parse(b.body) as { url: string }).url, '/two');
  });

  await t.test('WebSocket upgrades are still tunnelled, both forms', async (t) => {
    for (const f of forms(sid, '/ws').slice(0, 2)) {
      const ws = new WebSocket(f.url.replace('http://', 'ws://'), { headers: f.headers });
      const reply = await new Promise<string>((resolve, reject) => {
        ws.on('open', () => ws.send('hi'));
        ws.on('message', (m) => resolve(String(m)));
        ws.on('error', reject);
      });
      ws.close();
      t.equal(reply, 'echo:hi', f.name);
    }
  });

  await t.test('an app that closes connections idle for 200 ms loses no request', async (t) => {
    const app = await startApp({ idleCloseMs: 200 });
    closers.push(() => app.close());
    const s = await session(app);
    const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => keep.destroy());
    const failures: string[] = [];
    for (let i = 0; i < 40; i++) {
      const f = forms(s, `/get?i=${i}`)[i % 2]!;
      const method = i % 4 === 3 ? 'POST' : 'GET';
      const res = await request(f.url, { method, agent: keep, headers: f.headers, ...(method === 'POST' ? { body: `b${i}` } : {}) })
        .catch((err: Error) => ({ status: 0, body: err.message }));
      if (res.status !== 200) failures.push(`#${i} ${method}: ${res.status} ${res.body.slice(0, 100)}`);
      await new Promise((r) => setTimeout(r, 180 + (i % 5) * 10));
    }
    t.same(failures, [], 'every request answered');
  });

  await t.test('an app that drops a request arriving on a connection idle for 1 s loses no request', async (t) => {
    const app = await startApp({ dropIdleMs: 1000 });
    closers.push(() => app.close());
    const s = await session(app);
    const failures: string[] = [];
    for (let i = 0; i < 6; i++) {
      const f = forms(s, `/x?i=${i}`)[i % 2]!;
      const method = ['GET', 'POST', 'HEAD'][i % 3]!;
      const res = await request(f.url, { method, headers: f.headers, ...(method === 'POST' ? { body: 'payload' } : {}) })
        .catch((err: Error) => ({ status: 0, body: err.message }));
      if (res.status !== 200) failures.push(`#${i} ${method}: ${res.status} ${res.body.slice(0, 100)}`);
      if (i < 5) await new Promise((r) => setTimeout(r, 1300));
    }
    t.same(failures, [], 'every request answered');
    t.equal(app.requests.filter((r) => r.method === 'POST').length, 2, 'each POST reached the app exactly once');
  });
});
