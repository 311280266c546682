// The streaming proxy over real sockets: credential and header hygiene, the three ways to
// name a session, implicit sessions, SSE flushed as it arrives, aborts, 502/504.
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { firehoseByte, harness, routerUrl, type Harness } from './fixtures.js';

async function newSession(h: Harness): Promise<{ sessionId: string; instanceId: string }> {
  const res = await fetch(`${routerUrl(h.app)}/v1/sessions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }),
  });
  if (res.status !== 201) throw new Error(`claim failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as { sessionId: string; instanceId: string };
}

/** node:http, which (unlike fetch) lets a test send hop-by-hop headers. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    }).on('error', reject);
  });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('proxying by path, header and cookie reaches the session\'s instance with a clean hop', async (t) => {
  const h = await harness({ ready: 3, listen: true });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const s = await newSession(h);

  const res = await rawGet(`${base}/v1/sessions/${s.sessionId}/proxy/echo/x?q=1`, {
      'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6',
      'x-warmpool-credential': 'forged.value', connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', 'keep-alive': 'timeout=1',
      'proxy-authorization': 'Basic abc',
  });
  t.equal(res.status, 200, 'credential accepted by the instance');
  const body = JSON.parse(res.body) as { instanceId: string; sessionId: string; url: string; headers: Record<string, string> };
  t.equal(body.instanceId, s.instanceId, 'the claimed instance');
  t.equal(res.headers['x-instance-id'], s.instanceId);
  t.equal(body.sessionId, s.sessionId, 'credential names this session');
  t.equal(body.url, '/echo/x?q=1', 'path and query after /proxy');
  t.equal(body.headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For from the socket, not the client');
  t.equal(body.headers['x-forwarded-proto'], 'http');
  t.match(body.headers['x-forwarded-host'], /^127\.0\.0\.1:\d+$/);
  t.notOk(body.headers.forwarded, 'client Forwarded dropped');
  t.notOk(body.headers['x-real-ip'], 'client X-Real-IP dropped');
  t.notOk(body.headers['x-drop-me'], 'headers named in Connection dropped');
  t.notOk(body.headers['keep-alive'], 'Keep-Alive dropped');
  t.notOk(body.headers['proxy-authorization'], 'Proxy-Authorization dropped');
  t.equal(body.headers['x-warmpool-session'], s.sessionId);
  // The instance said timeout=5; the router may state its own connection's keep-alive, never relay the instance's.
  t.not(res.headers['keep-alive'], 'timeout=5', 'upstream Keep-Alive not relayed');
  t.equal(res.headers['x-custom'], 'yes', 'end-to-end response headers relayed');

  const root = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy`);
  t.equal(((await root.json()) as { url: string }).url, '/', 'bare /proxy is /');

  const post = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'x-warmpool-session': s.sessionId, 'content-type': 'application/json' }, body: JSON.stringify({ hello: 'world' }),
  });
  const pb = (await post.json()) as { instanceId: string; url: string; body: string; method: string };
  t.equal(pb.instanceId, s.instanceId, 'header-routed to the same instance');
  t.equal(pb.url, '/v1/chat/completions', 'same path');
  t.same(JSON.parse(pb.body), { hello: 'world' }, 'body streamed through');

  const cookie = await fetch(`${base}/page`, { headers: { cookie: `a=b; warmpool_session=${s.sessionId}` } });
  t.equal(((await cookie.json()) as { instanceId: string }).instanceId, s.instanceId, 'cookie-routed to the same instance');

  const chunked = await fetch(`${base}/upload`, {
    method: 'PUT', headers: { 'x-warmpool-session': s.sessionId }, duplex: 'half',
    body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('part1-')); c.enqueue(new TextEncoder().encode('part2')); c.close(); } }),
  } as RequestInit);
  t.equal(((await chunked.json()) as { body: string }).body, 'part1-part2', 'a chunked body streams through');
});

t.test('implicit session for the default service: header and cookie, then sticky', async (t) => {
  const h = await harness({ ready: 2, listen: true, router: { config: { defaultService: 'chatbot' } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const first = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  t.equal(first.status, 200);
  const id = first.headers.get('x-warmpool-session');
  t.ok(id, 'session id in X-Warmpool-Session');
  const setCookie = first.headers.get('set-cookie') ?? '';
  t.match(setCookie, new RegExp(`warmpool_session=${id}`), 'and in a cookie');
  t.match(setCookie, /HttpOnly/);
  t.match(setCookie, /SameSite=Lax/);
  const inst = ((await first.json()) as { instanceId: string }).instanceId;
  for (let i = 0; i < 3; i++) {
    const again = await fetch(`${base}/next`, { headers: { cookie: `warmpool_session=${id}` } });
    t.equal(((await again.json()) as { instanceId: string }).instanceId, inst, 'same instance via the cookie');
    t.match(again.headers.get('set-cookie') ?? '', new RegExp(`^warmpool_session=${id};`), 'no new session: the same cookie, renewed');
  }
});

t.test('the router\'s own paths are never proxied: no implicit session, a JSON 404/405/400 (helper found GET /v1/sessions claiming an instance)', async (t) => {
  const h = await harness({ ready: 2, listen: true, router: { config: { defaultService: 'chatbot' } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const s = await newSession(h);
  const sessions = async (): Promise<number> => (await (await h.registry.cache()).sessions.size);
  const before = await sessions();
  const cases: { method: string; path: string; headers?: Record<string, string>; status: number; allow?: string }[] = [
    { method: 'GET', path: '/v1/sessions', status: 405, allow: 'POST' },
    { method: 'PUT', path: '/v1/sessions?x=1', status: 405, allow: 'POST' },
    { method: 'POST', path: '/healthz', status: 405, allow: 'GET, HEAD' },
    { method: 'POST', path: '/metrics', headers: { 'x-warmpool-session': s.sessionId }, status: 405, allow: 'GET, HEAD' },
    { method: 'POST', path: '/dashboard', headers: { cookie: `warmpool_session=${s.sessionId}` }, status: 405, allow: 'GET, HEAD' },
    { method: 'GET', path: '/v1/services/chatbot/foo', headers: { 'x-warmpool-session': s.sessionId }, status: 404 },
    { method: 'GET', path: '/v1/dashboard/nosuch', status: 404 },
    { method: 'PUT', path: `/v1/sessions/${s.sessionId}`, status: 405, allow: 'GET, HEAD, DELETE' },
    { method: 'GET', path: `/v1/sessions/${'A'.repeat(5000)}`, status: 400 },
    { method: 'GET', path: `/v1/sessions/${'A'.repeat(300)}/proxy/x`, status: 400 },
    // Found by a second helper: prefixes without their slash, and 405 on routes with an id.
    { method: 'GET', path: '/v1/dashboard', status: 404 },
    { method: 'POST', path: '/v1/sessionsX', status: 404 },
    { method: 'GET', path: '/v1/services.json', status: 404 },
    { method: 'POST', path: '/v1/sessions/', status: 404 },
    { method: 'PATCH', path: `/v1/sessions/${s.sessionId}`, status: 405, allow: 'GET, HEAD, DELETE' },
    { method: 'POST', path: '/v1/services/chatbot/instances', status: 405, allow: 'GET, HEAD' },
  ];
  for (const c of cases) {
    const res = await fetch(`${base}${c.path}`, { method: c.method, headers: c.headers ?? {} });
    const body = (await res.json()) as { error?: { code: string; message: string }; instanceId?: string };
    t.equal(res.status, c.status, `${c.method} ${c.path.slice(0, 40)}: ${res.status} ${body.error?.code}`);
    t.ok(body.error && !body.instanceId, 'the router\'s own JSON error, not the app\'s answer');
    t.notOk(res.headers.get('x-instance-id'), 'nothing forwarded');
    t.notOk(res.headers.get('set-cookie'), 'no session started');
    if (c.allow) t.equal(res.headers.get('allow'), c.allow);
  }
  t.equal(await sessions(), before, 'no session was created');
  // An app's own /dashboard/... paths are not the router's: proxied by header as before.
  const appDash = await fetch(`${base}/dashboard/users`, { headers: { 'x-warmpool-session': s.sessionId } });
  t.equal(((await appDash.json()) as { instanceId: string }).instanceId, s.instanceId, '/dashboard/users reaches the app');
  // App paths elsewhere still go through, and HEAD on the router's GET routes is the router's.
  const app = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', 'x-warmpool-session': s.sessionId } });
  t.equal(((await app.json()) as { instanceId: string }).instanceId, s.instanceId);
  t.equal((await fetch(`${base}/healthz`, { method: 'HEAD' })).status, 200);
});

t.test('SSE events are flushed as they arrive', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const started = Date.now();
  const res = await fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/sse?n=4&gapMs=250`);
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  const first = await reader.read();
  const firstAt = Date.now() - started;
  t.match(new TextDecoder().decode(first.value), /data: \{"i":0/, 'first event');
  t.ok(firstAt < 600, `first event after ${firstAt} ms, long before the stream ends (~1000 ms)`);
  let rest = '';
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    rest += new TextDecoder().decode(r.value);
  }
  t.match(rest, /\[DONE\]/, 'stream completes');
  t.ok(Date.now() - started >= 700, 'the stream really was spread over time');
});

t.test('the head of a streamed response reaches the client when the instance sends it, before the first event', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const started = Date.now();
  const res = await fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/sse?n=2&gapMs=10&firstAfterMs=1500`);
  const headAt = Date.now() - started;
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  t.ok(headAt < 1000, `the head after ${headAt} ms; the first event comes after 1500 ms`);
  const text = await res.text();
  t.ok(Date.now() - started >= 1400, 'the events came later');
  t.match(text, /data: \{"i":0.*data: \{"i":1.*\[DONE\]/s, 'every event, in order');
});

t.test('a client that goes away aborts the upstream request', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const ac = new AbortController();
  const p = fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/hang`, { signal: ac.signal }).catch((e: unknown) => e);
  await until(() => inst.seen.some((r) => r.url === '/hang'));
  ac.abort();
  await p;
  await until(() => inst.aborted.includes('/hang'));
  t.pass('the instance saw its request closed');
});

t.test('a client that goes away mid-response aborts the upstream response', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const ac = new AbortController();
  const res = await fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/drip`, { signal: ac.signal });
  t.equal(res.status, 200, 'the response started');
  const reader = res.body!.getReader();
  const first = await reader.read();
  t.equal(new TextDecoder().decode(first.value), 'first', 'the first chunk arrived before the instance finished');
  ac.abort();
  await reader.read().catch(() => undefined);
  await until(() => inst.aborted.includes('/drip'));
  t.pass('the instance saw its unfinished response closed');
});

/** Sequential HTTP/1.1 responses with chunked bodies, as one connection carries them. */
function chunkedResponses(raw: string): { status: number; body: string }[] {
  const out: { status: number; body: string }[] = [];
  let at = 0;
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) throw new Error(`incomplete head at ${at}`);
    const head = raw.slice(at, headEnd);
    if (!/transfer-encoding: chunked/i.test(head)) throw new Error(`not chunked: ${head}`);
    at = headEnd + 4;
    let body = '';
    for (;;) {
      const eol = raw.indexOf('\r\n', at);
      const size = parseInt(raw.slice(at, eol), 16);
      if (!Number.isInteger(size)) throw new Error(`bad chunk size at ${at}: ${JSON.stringify(raw.slice(at, at + 20))}`);
      at = eol + 2;
      if (size === 0) { at += 2; break; }
      body += raw.slice(at, at + size);
      if (raw.slice(at + size, at + size + 2) !== '\r\n') throw new Error(`chunk not ended by CRLF at ${at + size}`);
      at += size + 2;
    }
    out.push({ status: Number(head.split(' ')[1]), body });
  }
  return out;
}

t.test('two pipelined streams: the second, held back while the first streams, then streams itself, each whole and in order', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const url = new URL(routerUrl(h.app));
  const path = `/v1/sessions/${s.sessionId}/proxy`;
  const sock = net.connect(Number(url.port), url.hostname);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const get = (p: string): string => `GET ${path}${p} HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`;
  // The second's events start while the first still streams and go on after it ended.
  sock.write(get('/sse?n=5&gapMs=40') + get('/sse?n=12&gapMs=30'));
  let raw = '';
  sock.setEncoding('latin1');
  sock.on('data', (d: string) => (raw += d));
  await until(() => raw.split('data: [DONE]').length === 3, 10_000);
  await new Promise((r) => setTimeout(r, 50));
  sock.destroy();
  const responses = chunkedResponses(raw);
  t.equal(responses.length, 2, 'two responses');
  for (const [k, n] of [[0, 5], [1, 12]] as const) {
    const r = responses[k]!;
    t.equal(r.status, 200);
    const events = r.body.split('\n\n').filter(Boolean);
    t.same(events.slice(0, -1).map((e) => (JSON.parse(e.slice(6)) as { i: number }).i), Array.from({ length: n }, (_, i) => i), `response ${k + 1}: every event, in order`);
    t.equal(events.at(-1), 'data: [DONE]');
  }
});

/**
 * A stream, then `second` (built from the proxy path and host) pipelined behind it in one
 * write; once the instance has seen both (and `settleMs` more), the client leaves: both
 * must be aborted at the instance.
 */
async function pipelinedThenGone(t: Test, second: (path: string, host: string) => string, settleMs = 0): Promise<void> {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const url = new URL(routerUrl(h.app));
  const path = `/v1/sessions/${s.sessionId}/proxy`;
  const sock = net.connect(Number(url.port), url.hostname);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(`GET ${path}/sse?n=100000&gapMs=5&a HTTP/1.1\r\nhost: ${url.host}\r\n\r\n${second(path, url.host)}`);
  sock.resume();
  await until(() => inst.seen.filter((r) => r.url?.startsWith('/sse?')).length === 2);
  if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
  sock.destroy();
  await until(() => inst.aborted.includes('/sse?n=100000&gapMs=5&a'));
  await until(() => inst.aborted.includes('/sse?n=100000&gapMs=5&b'));
  t.pass('both streams stopped at the instance');
}

t.test('a pipelined request queued behind a stream is aborted upstream when the client goes away', (t) =>
  // The second waits in the router behind the first, which streams.
  pipelinedThenGone(t, (path, host) => `GET ${path}/sse?n=100000&gapMs=5&b HTTP/1.1\r\nhost: ${host}\r\n\r\n`));

t.test('a client gone while its session is looked up: nothing is forwarded and nothing stays open', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  // As if the router's copy did not have the session yet and the registry answered slowly.
  const ctx = h.app.warmpool;
  const fromCache = ctx.directory.fromCache.bind(ctx.directory);
  const lookupSession = h.registry.lookupSession.bind(h.registry);
  ctx.directory.fromCache = () => undefined;
  let looking = false;
  h.registry.lookupSession = async (id) => {
    looking = true;
    await new Promise((r) => setTimeout(r, 300));
    return lookupSession(id);
  };
  t.teardown(() => { ctx.directory.fromCache = fromCache; h.registry.lookupSession = lookupSession; });
  const ac = new AbortController();
  const p = fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/sse?n=1000&gapMs=20&late`, { signal: ac.signal }).catch((e: unknown) => e);
  await until(() => looking);
  ac.abort();
  await p;
  await new Promise((r) => setTimeout(r, 600));
  t.notOk(inst.seen.some((r) => r.url?.endsWith('&late')), 'the instance never got the request');
  const entry = (ctx.forwarder as unknown as { streaming: Map<string, { open: number }> }).streaming.get(s.sessionId);
  t.equal(entry?.open ?? 0, 0, 'no response of the session counts as open');
});

t.test('a streamed body arrives whole and in order, and a client that stops reading stops the instance', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  // Far more than every socket buffer between the instance and the client holds.
  const total = 128 * 1024 * 1024;
  const path = `/firehose?bytes=${total}&chunk=${16 * 1024}`;
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy${path}`, { agent: false }, resolve).on('error', reject);
  });
  t.teardown(() => res.destroy());
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-length'], undefined, 'streamed: no length');
  let received = 0;
  let mismatchAt = -1;
  const check = (c: Buffer): void => {
    for (let i = 0; i < c.length && mismatchAt < 0; i++) if (c[i] !== firehoseByte(received + i)) mismatchAt = received + i;
    received += c.length;
  };
  // Read a little, then stop reading.
  await new Promise<void>((resolve) => res.once('data', (c: Buffer) => { check(c); res.pause(); resolve(); }));
  res.on('data', check);
  res.pause();
  await new Promise((r) => setTimeout(r, 1000));
  const stalledAt = inst.written.get(path) ?? 0;
  await new Promise((r) => setTimeout(r, 500));
  t.equal(inst.written.get(path), stalledAt, `the instance is held back while the client reads nothing (${stalledAt} bytes written)`);
  t.ok(stalledAt < total / 2, `the router buffers no more than the sockets do: ${stalledAt} of ${total} bytes written`);
  const ended = new Promise<void>((resolve, reject) => { res.on('end', resolve); res.on('error', reject); });
  res.resume();
  await ended;
  t.equal(mismatchAt, -1, 'every byte where it belongs');
  t.equal(received, total, 'the whole body');
});

t.test('streamed bodies in large and odd chunk sizes arrive byte-exact, and the kept-alive connection stays in step', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  // One connection for all: a body framed wrongly shows as a short body or a parse error of the next response.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (path: string): Promise<{ status: number; body: Buffer }> => new Promise((resolve, reject) => {
    http.get(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy${path}`, { agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    }).on('error', reject);
  });
  for (const [bytes, chunk] of [[4 * 1024 * 1024, 65536], [4 * 1024 * 1024, 1024 * 1024], [1_000_000, 100_000], [3 * 65536 + 7, 65536 + 1], [20_000, 1]]) {
    const r = await get(`/firehose?bytes=${bytes}&chunk=${chunk}`);
    t.equal(r.status, 200);
    let mismatchAt = -1;
    for (let i = 0; i < r.body.length && mismatchAt < 0; i++) if (r.body[i] !== firehoseByte(i)) mismatchAt = i;
    t.ok(r.body.length === bytes && mismatchAt === -1, `${bytes} bytes in ${chunk}-byte writes: ${r.body.length} arrived, first wrong byte ${mismatchAt}`);
  }
  const after = await get('/echo');
  t.equal(after.status, 200, 'the connection still carries the next request');
});

t.test('a pipelined request with a body, queued behind a stream, is aborted upstream when the client goes away', (t) =>
  // The POST's body is read whole before the client leaves: its request is over, its response still queued.
  pipelinedThenGone(t, (path, host) => `POST ${path}/sse?n=100000&gapMs=5&b HTTP/1.1\r\nhost: ${host}\r\ncontent-length: 5\r\n\r\nhello`, 200));

t.test('a streamed body that stalls after several chunks ends in an error; a client gone mid-stream aborts the instance', async (t) => {
  const h = await harness({ ready: 1, listen: true, router: { config: { proxy: { idleTimeoutMs: 400 } } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const read = async (reader: ReadableStreamDefaultReader<Uint8Array>, until: string): Promise<string> => {
    let text = '';
    while (!text.includes(until)) {
      const r = await reader.read();
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    return text;
  };

  const stalls = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy/drip?n=6`);
  const reader = stalls.body!.getReader();
  t.equal(await read(reader, 'c5'), 'c0c1c2c3c4c5', 'every chunk before the stall, in order');
  await t.rejects(reader.read(), 'then the body ends in an error, not a silent end');

  const ac = new AbortController();
  const gone = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy/drip?n=1000`, { signal: ac.signal });
  const goneReader = gone.body!.getReader();
  t.match(await read(goneReader, 'c4'), /^c0c1c2c3c4/, 'several chunks arrived');
  ac.abort();
  await goneReader.read().catch(() => undefined);
  await until(() => inst.aborted.includes('/drip?n=1000'));
  t.pass('the instance saw its unfinished stream closed');
});

t.test('instance unreachable -> 502, idle upstream -> 504, death mid-body -> aborted response', async (t) => {
  const h = await harness({ ready: 2, listen: true, router: { config: { proxy: { idleTimeoutMs: 300 } } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const a = await newSession(h);
  const b = await newSession(h);

  const slow = await fetch(`${base}/v1/sessions/${a.sessionId}/proxy/hang`);
  t.equal(slow.status, 504);
  t.equal(((await slow.json()) as { error: { code: string } }).error.code, 'WARMPOOL_UPSTREAM_TIMEOUT');

  const drip = await fetch(`${base}/v1/sessions/${a.sessionId}/proxy/drip`);
  t.equal(drip.status, 200, 'headers arrived');
  await t.rejects(drip.text(), 'the body ends in an error, not a silent truncation');

  await h.instances.find((i) => i.id === b.instanceId)!.close();
  const down = await fetch(`${base}/v1/sessions/${b.sessionId}/proxy/x`);
  t.equal(down.status, 502);
  t.equal(((await down.json()) as { error: { code: string } }).error.code, 'WARMPOOL_INSTANCE_UNREACHABLE');

  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /warmpool_router_proxy_errors_total\{code="WARMPOOL_INSTANCE_UNREACHABLE"\} 1/);
  t.match(metrics, /warmpool_router_proxy_errors_total\{code="WARMPOOL_UPSTREAM_TIMEOUT"\} [12]/);
});

t.test('small responses with a Content-Length are read whole; longer ones and SSE stream as they arrive', async (t) => {
  const h = await harness({ ready: 1, listen: true, router: { config: { proxy: { bufferResponseBytes: 1000, idleTimeoutMs: 1000 } } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const via = (p: string, init?: RequestInit): Promise<Response> => fetch(`${base}/v1/sessions/${s.sessionId}/proxy${p}`, init);

  // Within the limit: the client's response starts once the instance has written it all.
  const small = await via('/fixed?bytes=600&gapMs=300');
  t.ok(inst.finished.includes('/fixed?bytes=600&gapMs=300'), 'headers reach the client only after the whole body was written');
  t.equal(small.headers.get('content-length'), '600', 'Content-Length kept');
  t.same(Buffer.from(await small.arrayBuffer()), Buffer.alloc(600, 121), 'the body intact');

  // Over the limit: the first half reaches the client while the instance still waits.
  const large = await via('/fixed?bytes=1600&gapMs=300');
  const reader = large.body!.getReader();
  let got = 0;
  while (got < 800) got += (await reader.read()).value?.length ?? Infinity;
  t.notOk(inst.finished.includes('/fixed?bytes=1600&gapMs=300'), 'a longer response streams: the first half arrived before the instance finished');
  while (!(await reader.read()).done);

  // SSE (no length) streams too.
  const sse = await via('/sse?n=3&gapMs=200');
  const sseReader = sse.body!.getReader();
  await sseReader.read();
  t.notOk(inst.finished.includes('/sse?n=3&gapMs=200'), 'the first event arrived before the stream ended');
  while (!(await sseReader.read()).done);

  // HEAD: the instance's Content-Length, no body.
  const head = await via('/big?bytes=300', { method: 'HEAD' });
  const direct = await fetch(`http://${inst.address}/big?bytes=300`, { method: 'HEAD' });
  t.same([head.status, head.headers.get('content-length'), (await head.arrayBuffer()).byteLength], [200, direct.headers.get('content-length'), 0], 'HEAD answered as the instance answers it');

  // An instance that stops mid-body: nothing was sent yet, so the client gets a clean 504.
  const stalled = await via('/partial');
  t.equal(stalled.status, 504, 'a small response that stalls mid-body is a 504');
  t.match(await stalled.json(), { error: { code: 'WARMPOOL_UPSTREAM_TIMEOUT' } });

  // A client that goes away while its response is being read aborts the instance's response.
  const ac = new AbortController();
  const gone = via('/partial?again', { signal: ac.signal }).catch((e: unknown) => e);
  await until(() => inst.seen.some((r) => r.url === '/partial?again'));
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await gone;
  await until(() => inst.aborted.includes('/partial?again'));
  t.pass('the instance saw its unfinished response closed');
});

t.test('proxy.bufferResponseBytes 0 streams every response', async (t) => {
  const h = await harness({ ready: 1, listen: true, router: { config: { proxy: { bufferResponseBytes: 0 } } } });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const inst = h.instances.find((i) => i.id === s.instanceId)!;
  const res = await fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/fixed?bytes=100&gapMs=300`);
  const reader = res.body!.getReader();
  await reader.read();
  t.notOk(inst.finished.includes('/fixed?bytes=100&gapMs=300'), 'the first half arrived before the instance finished');
  let n = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) n += r.value.length;
  t.ok(n > 0, 'the rest followed');
});

t.test('the session keep-alive is refreshed by traffic', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const s = await newSession(h);
  const lease = h.registry.store;
  const spy: string[][] = [];
  const orig = lease.keepAlive.bind(lease);
  lease.keepAlive = async (ids: string[]) => { spy.push(ids); return orig(ids); };
  for (let i = 0; i < 5; i++) await (await fetch(`${routerUrl(h.app)}/v1/sessions/${s.sessionId}/proxy/x`)).text();
  await until(() => spy.length > 0);
  t.ok(spy.length <= 2, `keep-alives batched (${spy.length} for 5 requests)`);
});

t.test('a misbehaving instance gets a clear 502 or a cut-off response, never a crash', async (t) => {
  const h = await harness({ ready: 0, listen: true, router: { config: { proxy: { idleTimeoutMs: 1000 } } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  // A raw TCP "instance": the request path picks how it breaks HTTP.
  const answers: Record<string, string> = {
    '/garbage': 'HELLO THERE\r\n\r\n',
    '/bad-status': 'HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok',
    '/nul-header': 'HTTP/1.1 200 OK\r\nX-Bad: a\u0000b\r\nContent-Length: 2\r\n\r\nok',
    '/two-lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok',
    '/huge-headers': `HTTP/1.1 200 OK\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'v'.repeat(100)}`).join('\r\n')}\r\nContent-Length: 2\r\n\r\nok`,
    '/short-body': 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc',
    '/close': '',
  };
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    let head = '';
    sock.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const path = head.split(' ')[1] ?? '';
      const answer = answers[path];
      if (answer === undefined || answer === '') { sock.destroy(); return; }
      sock.end(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  await h.host.putInstance({
    id: 'broken-1', service: 'chatbot', host: 'host-a', state: 'ready', address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    containerId: 'c-broken', slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
  });
  const s = await (async () => {
    for (let i = 0; i < 50; i++) {
      try { return await newSession(h); } catch { await new Promise((r) => setTimeout(r, 20)); }
    }
    throw new Error('no session on the broken instance');
  })();
  t.equal(s.instanceId, 'broken-1');
  for (const path of ['/garbage', '/bad-status', '/nul-header', '/two-lengths', '/huge-headers', '/close']) {
    const res = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy${path}`);
    const body = await res.text();
    t.equal(res.status, 502, `${path}: 502 (${body})`);
    t.match(body, /"code":"WARMPOOL_/, `${path}: a JSON error`);
  }
  const short = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy/short-body`);
  if (short.status === 200) await t.rejects(short.text(), 'a body shorter than announced ends in an error, not a silent truncation');
  else t.equal(short.status, 502, 'or a 502 before anything was sent');
  // The router is still up and answering.
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'router still healthy');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /warmpool_router_proxy_errors_total\{code="WARMPOOL_/, 'counted as proxy errors');
});

t.test('an instance that sends more than its Content-Length: the client gets the announced body, the extra bytes answer nothing', async (t) => {
  const h = await harness({ ready: 0, listen: true, router: { config: { proxy: { bufferResponseBytes: 1000, idleTimeoutMs: 1000 } } } });
  t.teardown(() => h.close());
  const base = routerUrl(h.app);
  // A raw TCP instance that keeps its connections open. After the announced body it writes
  // a complete second response: if the router's pooled connection took that for the answer
  // to the next request, that request would get "SMUGGLED".
  const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED';
  const answers: Record<string, string> = {
    '/small': `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${smuggled}`,
    '/large': `HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n${'y'.repeat(2000)}${smuggled}`,
    '/after': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter',
  };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const path = buf.slice(0, end).split(' ')[1] ?? '';
        buf = buf.slice(end + 4);
        if (path === '/late') {
          // The extra response comes later, while the connection idles in the router's pool.
          sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          setTimeout(() => { if (!sock.destroyed) sock.write(smuggled); }, 30);
        } else sock.write(answers[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  await h.host.putInstance({
    id: 'overlong-1', service: 'chatbot', host: 'host-a', state: 'ready', address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    containerId: 'c-overlong', slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
  });
  let s: { sessionId: string; instanceId: string } | undefined;
  for (let i = 0; i < 50 && !s; i++) s = await newSession(h).catch(async () => { await new Promise((r) => setTimeout(r, 20)); return undefined; });
  t.equal(s?.instanceId, 'overlong-1');
  const via = (p: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> => rawGet(`${base}/v1/sessions/${s!.sessionId}/proxy${p}`, {});

  for (const [path, body] of [['/small', 'ok'], ['/large', 'y'.repeat(2000)], ['/late', 'ok']] as const) {
    const res = await via(path);
    if (path === '/late') await new Promise((r) => setTimeout(r, 100));
    t.equal(res.status, 200, `${path}: 200`);
    t.equal(res.body, body, `${path}: exactly the announced body`);
    t.equal(res.headers['content-length'], String(body.length), `${path}: the announced length`);
    for (let i = 0; i < 3; i++) {
      const after = await via('/after');
      t.same([after.status, after.body], [200, 'after'], `${path}, then /after #${i + 1}: its own answer, never the extra bytes`);
    }
  }
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'router still healthy');
});
