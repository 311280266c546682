// The sidecar as a plain process, in front of a fake app on 127.0.0.1: the credential gate,
// header hygiene, streaming, WebSocket upgrades, the status endpoint and state reports over
// a unix socket.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { instanceKey, sessionCredential, CREDENTIAL_HEADER } from '@warmpool/registry/credentials';
import { startSidecar } from '../src/sidecar.js';
import type { SidecarConfig } from '../src/config.js';
import { REPORT_HEADER, reportToken, type StateReport } from '../src/protocol.js';

const key = instanceKey('secret', 'inst-1');

async function until(fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface FakeApp { port: number; ready: boolean; lastHeaders: http.IncomingHttpHeaders | undefined; releaseSecond: () => void; close(): Promise<void> }

async function fakeApp(): Promise<FakeApp> {
  let release: () => void = () => {};
  const app: FakeApp = { port: 0, ready: false, lastHeaders: undefined, releaseSecond: () => release(), close: async () => {} };
  const server = http.createServer((req, res) => {
    if (req.url === '/health') { res.writeHead(app.ready ? 200 : 503).end(); return; }
    app.lastHeaders = req.headers;
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      release = () => res.end('data: second\n\n');
      return;
    }
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url, method: req.method, body })));
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket) => {
    upgraded.add(socket);
    app.lastHeaders = req.headers;
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString()}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  app.port = (server.address() as AddressInfo).port;
  app.close = () => new Promise((r) => { server.closeAllConnections(); for (const s of upgraded) s.destroy(); server.close(() => r()); });
  return app;
}

function config(appPort: number, extra: Partial<SidecarConfig> = {}): SidecarConfig {
  return {
    instanceId: 'inst-1', instanceKey: key, listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: appPort },
    readiness: { path: '/health', expectStatus: 200, intervalMs: 20, timeoutMs: 500, bootTimeoutMs: 60_000, failureThreshold: 2 },
    ...extra,
  };
}

t.test('gate and forwarding', async (t) => {
  const app = await fakeApp();
  const sc = await startSidecar(config(app.port));
  t.teardown(async () => { await sc.close(); await app.close(); });
  const base = `http://127.0.0.1:${sc.port}`;

  await t.test('no credential: 403 with a JSON error, the app never sees it', async (t) => {
    app.lastHeaders = undefined;
    const res = await fetch(`${base}/v1/chat`, { method: 'POST', body: 'x' });
    t.equal(res.status, 403);
    t.same(await res.json(), { error: { code: 'WARMPOOL_FORBIDDEN', message: `this instance only serves the session that claimed it (no ${CREDENTIAL_HEADER} header)` } });
    const forged = await fetch(`${base}/v1/chat`, { headers: { [CREDENTIAL_HEADER]: 'sess.AAAA' } });
    t.equal(forged.status, 403);
    t.equal(app.lastHeaders, undefined);
  });

  await t.test('the right credential reaches the app, without the credential header', async (t) => {
    const res = await fetch(`${base}/v1/chat?x=1`, { method: 'POST', body: 'hello', headers: { [CREDENTIAL_HEADER]: sessionCredential(key, 'sess-a'), 'x-custom': 'kept' } });
    t.equal(res.status, 200);
    t.same(await res.json(), { path: '/v1/chat?x=1', method: 'POST', body: 'hello' });
    t.equal(app.lastHeaders?.[CREDENTIAL_HEADER], undefined, 'credential stripped');
    t.equal(app.lastHeaders?.['x-custom'], 'kept');
  });

  await t.test('another session is refused once one is pinned', async (t) => {
    const res = await fetch(`${base}/`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(key, 'sess-b') } });
    t.equal(res.status, 403);
    t.equal(((await res.json()) as { error: { message: string } }).error.message, 'this instance serves another session');
  });

  await t.test('SSE chunks arrive as the app writes them', async (t) => {
    const res = await fetch(`${base}/sse`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(key, 'sess-a') } });
    t.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    const first = await reader.read();
    t.equal(Buffer.from(first.value!).toString(), 'data: first\n\n', 'first event before the app finished');
    app.releaseSecond();
    let rest = '';
    for (;;) { const r = await reader.read(); if (r.done) break; rest += Buffer.from(r.value).toString(); }
    t.equal(rest, 'data: second\n\n');
  });

  await t.test('WebSocket-style upgrades: refused without credential, piped with it', async (t) => {
    const refused = await rawUpgrade(sc.port, undefined);
    t.match(refused, /^HTTP\/1.1 403 Forbidden/);
    const sock = net.connect(sc.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.write(`GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${CREDENTIAL_HEADER}: ${sessionCredential(key, 'sess-a')}\r\n\r\n`);
    await until(() => got.includes('101 Switching Protocols'));
    sock.write('ping');
    await until(() => got.includes('echo:ping'));
    t.equal(app.lastHeaders?.[CREDENTIAL_HEADER], undefined, 'credential stripped from the handshake');
    sock.destroy();
  });

  await t.test('any other upgrade offer (h2c) and Expect: answered as plain HTTP/1.1, on the same connection (issue 13)', async (t) => {
    const sock = net.connect(sc.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    const cred = `${CREDENTIAL_HEADER}: ${sessionCredential(key, 'sess-a')}\r\n`;
    sock.write(`POST /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${cred}Content-Length: 5\r\n\r\nhello`);
    await until(() => got.includes('"body":"hello"'));
    t.match(got, /^HTTP\/1\.1 200 OK/, 'a plain 200, no 101');
    t.equal(app.lastHeaders?.upgrade, undefined, 'the offer is not passed on');
    t.equal(app.lastHeaders?.['http2-settings'], undefined);
    got = '';
    sock.write(`POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n${cred}Content-Length: 3\r\n\r\n`);
    await until(() => got.includes('100 Continue'));
    sock.write('abc');
    await until(() => got.includes('"body":"abc"'));
    t.equal(app.lastHeaders?.expect, undefined, 'the expectation was met by the sidecar');
    sock.destroy();
  });

  await t.test('status endpoint answers without credential; other /_warmpool/ paths are 404', async (t) => {
    const res = await fetch(`${base}/_warmpool/status`);
    t.equal(res.status, 200);
    const s = (await res.json()) as { instanceId: string; sessionPinned: boolean };
    t.equal(s.instanceId, 'inst-1');
    t.equal(s.sessionPinned, true);
    t.equal((await fetch(`${base}/_warmpool/other`)).status, 404);
  });
});

t.test('an app that does not answer: 502 with a JSON error', async (t) => {
  const app = await fakeApp();
  const port = app.port;
  await app.close();
  const sc = await startSidecar(config(port));
  t.teardown(() => sc.close());
  const res = await fetch(`http://127.0.0.1:${sc.port}/`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(key, 's') } });
  t.equal(res.status, 502);
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'WARMPOOL_APP_UNAVAILABLE');
});

t.test('reports booting -> ready -> unhealthy to the agent socket, authenticated, retrying until it listens', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-sidecar-'));
  const socketPath = path.join(dir, 'agent.sock');
  const app = await fakeApp();
  const sc = await startSidecar(config(app.port, { agentSocket: socketPath }));
  const reports: StateReport[] = [];
  const tokens: (string | undefined)[] = [];
  // The agent starts after the sidecar: the first report has to be retried.
  await new Promise((r) => setTimeout(r, 50));
  const agent = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      tokens.push(req.headers[REPORT_HEADER] as string | undefined);
      t.equal(req.url, '/v1/instances/inst-1/state');
      reports.push(JSON.parse(body) as StateReport);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => agent.listen(socketPath, r));
  t.teardown(async () => { await sc.close(); await app.close(); await new Promise((r) => agent.close(r)); rmSync(dir, { recursive: true, force: true }); });
  await until(() => reports.some((r) => r.state === 'booting'));
  app.ready = true;
  await until(() => reports.some((r) => r.state === 'ready'));
  const ready = reports.find((r) => r.state === 'ready')!;
  t.ok(ready.bootMs !== null && ready.bootMs >= 0, 'ready carries the boot time');
  app.ready = false;
  await until(() => reports.some((r) => r.state === 'unhealthy'));
  t.ok(tokens.every((x) => x === reportToken(key, 'inst-1')), 'every report carries the report token');
});

function rawUpgrade(port: number, credential: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${credential ? `${CREDENTIAL_HEADER}: ${credential}\r\n` : ''}\r\n`);
    });
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

t.test('warm-up requests: sent in order with body and headers, each with its timeout and expected status', async (t) => {
  const got: { method?: string; url?: string; body: string; headers: http.IncomingHttpHeaders }[] = [];
  let stall = false;
  const server = http.createServer((req, res) => {
    if (req.url === '/health') { res.writeHead(200).end(); return; }
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      got.push({ method: req.method, url: req.url, body, headers: req.headers });
      if (stall) return; // never answers
      res.writeHead(req.url === '/api/generate' ? 200 : 404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const port = (server.address() as AddressInfo).port;
  const states: StateReport[] = [];
  const sc = await startSidecar(config(port, {
    warmup: [
      { method: 'POST', path: '/api/generate', body: '{"model":"m"}', headers: { 'content-type': 'application/json', 'x-a': 'b' }, timeoutMs: 5000, expectStatus: 200 },
    ],
  }), { onState: (r) => states.push(r) });
  t.teardown(() => sc.close());
  await until(() => states.some((s) => s.state === 'ready'));
  t.same(states.map((s) => s.state), ['booting', 'warming', 'ready']);
  t.match(got[0], { method: 'POST', url: '/api/generate', body: '{"model":"m"}', headers: { 'content-type': 'application/json', 'x-a': 'b' } });
  t.type(states.at(-1)!.warmupMs, 'number', 'the ready report carries the warm-up time');

  const failing: StateReport[] = [];
  const bad = await startSidecar(config(port, { warmup: [{ method: 'GET', path: '/nope', headers: {}, timeoutMs: 5000, expectStatus: 200 }] }), { onState: (r) => failing.push(r) });
  t.teardown(() => bad.close());
  await until(() => failing.some((s) => s.state === 'failed'));
  t.match(failing.at(-1)!.reason, /warm-up 1 of 1 failed: GET \/nope answered 404, expected 200/);

  stall = true;
  const slow: StateReport[] = [];
  const hung = await startSidecar(config(port, { warmup: [{ method: 'POST', path: '/api/generate', headers: {}, timeoutMs: 300, expectStatus: 200 }] }), { onState: (r) => slow.push(r) });
  t.teardown(() => hung.close());
  await until(() => slow.some((s) => s.state === 'failed'));
  t.match(slow.at(-1)!.reason, /gave no full answer within 0\.3 s/);
});

t.test('liveness counts only while idle: a stalled /health during a stream keeps the instance', async (t) => {
  let healthStalls = false;
  let stalledProbes = 0;
  let endStream: () => void = () => {};
  const server = http.createServer((req, res) => {
    if (req.url === '/health') { if (!healthStalls) res.writeHead(200).end(); else stalledProbes++; return; }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: first\n\n');
    endStream = () => res.end('data: last\n\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const port = (server.address() as AddressInfo).port;
  const states: StateReport[] = [];
  const sc = await startSidecar(config(port, {
    liveness: { path: '/health', expectStatus: 200, intervalMs: 20, timeoutMs: 50, failureThreshold: 2 },
  }), { onState: (r) => states.push(r) });
  t.teardown(() => sc.close());
  await until(() => states.some((s) => s.state === 'ready'));
  const res = await fetch(`http://127.0.0.1:${sc.port}/stream`, { headers: { [CREDENTIAL_HEADER]: sessionCredential(key, 'sess-1') } });
  const reader = res.body!.getReader();
  await reader.read();
  healthStalls = true;
  await until(() => stalledProbes >= 8, 10_000);
  t.notOk(states.some((s) => s.state === 'unhealthy'), 'still ready while the stream is in flight');
  endStream();
  let text = '';
  for (;;) { const { value, done } = await reader.read(); if (done) break; text += new TextDecoder().decode(value); }
  t.match(text, /data: last/, 'the stream completed');
  await until(() => states.some((s) => s.state === 'unhealthy'), 5000);
  t.match(states.at(-1)!.reason, /2 failed liveness probes in a row \(last: no answer in time\)/, 'idle again: the stalled health counts');
});
