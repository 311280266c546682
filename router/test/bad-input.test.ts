// Hostile and malformed requests, written as raw bytes over a socket: each gets a clear 4xx
// (never a 5xx, never a crash) and none reaches an instance, least of all another
// session's.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { harness, type Harness } from './fixtures.js';

/** Sends raw bytes, returns everything the router answered until it closed or went quiet. */
function raw(port: number, bytes: string | Buffer, quietMs = 400): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => { clearTimeout(timer); sock.destroy(); resolve(out); };
    const arm = (): void => { clearTimeout(timer); timer = setTimeout(done, quietMs); };
    sock.on('data', (d: Buffer) => { out += d.toString('latin1'); arm(); });
    sock.on('close', done);
    sock.on('error', done);
    sock.write(bytes);
    arm();
  });
}

function statusOf(response: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(response);
  return m ? Number(m[1]) : 0;
}

function codeOf(response: string): string | undefined {
  const body = response.slice(response.indexOf('\r\n\r\n') + 4);
  const json = /\{"error":\{"code":"([A-Z_]+)"/.exec(body);
  return json?.[1];
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ h: Harness; port: number; a: string; b: string; seen: () => number }> {
  const h = await harness({ ready: 2, listen: true, router: { config: { limits: { maxBodyBytes: 1024, maxHeaderBytes: 8192 } } } });
  t.teardown(() => h.close());
  const port = (h.app.server.address() as AddressInfo).port;
  const claim = async (): Promise<string> => {
    const r = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
    return r.json().sessionId as string;
  };
  const a = await claim();
  const b = await claim();
  return { h, port, a, b, seen: () => h.instances.reduce((n, i) => n + i.seen.length, 0) };
}

t.test('malformed framing and oversized input: clear 4xx, nothing forwarded', async (t) => {
  const { port, a, seen } = await setup(t);
  const cases: [string, string, number[], string?][] = [
    ['oversized headers', `GET /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`, [431], 'WARMPOOL_HEADERS_TOO_LARGE'],
    ['Content-Length and Transfer-Encoding together', `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/sessions/${a}/proxy/smuggled HTTP/1.1\r\nHost: r\r\n\r\n`, [400], 'WARMPOOL_BAD_REQUEST'],
    ['two different Content-Lengths', `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`, [400], 'WARMPOOL_BAD_REQUEST'],
    ['Transfer-Encoding not chunked last', `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, [400], 'WARMPOOL_BAD_REQUEST'],
    ['bad chunk size', `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, [400], 'WARMPOOL_BAD_REQUEST'],
    ['garbage request line', 'HELLO THERE\r\n\r\n', [400], 'WARMPOOL_BAD_REQUEST'],
    ['space in header name', `GET /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nBad Header: x\r\n\r\n`, [400], 'WARMPOOL_BAD_REQUEST'],
    ['body over the limit (Content-Length)', `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nContent-Length: 5000\r\n\r\n${'x'.repeat(5000)}`, [413], 'WARMPOOL_BODY_TOO_LARGE'],
    ['JSON API body over the limit', `POST /v1/sessions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{"service":"${'x'.repeat(19_980)}"}`, [413], 'WARMPOOL_BODY_TOO_LARGE'],
    ['bad JSON', 'POST /v1/sessions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{"servic', [400], 'WARMPOOL_BAD_JSON'],
    ['two session headers', `GET /x HTTP/1.1\r\nHost: r\r\nX-Warmpool-Session: ${a}\r\nX-Warmpool-Session: ${a}\r\nConnection: close\r\n\r\n`, [400], 'WARMPOOL_INVALID_SESSION_ID'],
  ];
  for (const [name, bytes, statuses, code] of cases) {
    const before = seen();
    const res = await raw(port, bytes);
    t.ok(statuses.includes(statusOf(res)), `${name}: ${statusOf(res)} (${res.split('\r\n')[0]})`);
    if (code) t.equal(codeOf(res), code, `${name}: ${code}`);
    t.equal(seen(), before, `${name}: nothing reached an instance`);
  }
});

t.test('a chunked body over the limit is cut off with 413', async (t) => {
  const { port, a } = await setup(t);
  const chunk = 'x'.repeat(600);
  const body = `258\r\n${chunk}\r\n258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`;
  const res = await raw(port, `POST /v1/sessions/${a}/proxy/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
  t.equal(statusOf(res), 413, res.split('\r\n')[0] ?? '');
  t.equal(codeOf(res), 'WARMPOOL_BODY_TOO_LARGE');
});

t.test('path traversal, raw and encoded: 400, never another session\'s instance', async (t) => {
  const { h, port, a, b, seen } = await setup(t);
  const paths = [
    `/v1/sessions/${a}/proxy/../../${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/..`,
    `/v1/sessions/${a}/proxy/./x`,
    `/v1/sessions/${a}/proxy/%2e%2e/%2e%2e/${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/%2E%2E%2F%2E%2E%2F${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/..%2f..%2f${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/.%2e/x`,
    `/v1/sessions/${a}/proxy/..\\..\\${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/x%5c..%5cy`,
    `/v1/sessions/${a}/proxy/x%00y`,
    `/v1/sessions/${a}/../${b}/proxy/x`,
    `/v1/sessions/%2e%2e/${b}/proxy/x`,
    `/v1/sessions/${a}/proxy/x/../../../../etc/passwd`,
  ];
  for (const p of paths) {
    const before = seen();
    const res = await raw(port, `GET ${p} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n`);
    const status = statusOf(res);
    t.ok(status >= 400 && status < 500, `${p}: ${status} ${codeOf(res)}`);
    t.equal(seen(), before, `${p}: nothing forwarded`);
  }
  // Dot segments through header routing are refused the same way.
  const viaHeader = await raw(port, `GET /a/../b HTTP/1.1\r\nHost: r\r\nX-Warmpool-Session: ${a}\r\nConnection: close\r\n\r\n`);
  t.equal(statusOf(viaHeader), 400);
  t.equal(codeOf(viaHeader), 'WARMPOOL_BAD_PATH');
  // And a session's own path still works afterwards.
  const ok = await raw(port, `GET /v1/sessions/${b}/proxy/fine HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n`);
  t.equal(statusOf(ok), 200);
  t.ok(h.instances.some((i) => i.seen.some((r) => r.url === '/fine')));
});

t.test('after all of it the router still serves', async (t) => {
  const { port } = await setup(t);
  for (let i = 0; i < 20; i++) await raw(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, i]), 100); // TLS hello at a plain port
  const res = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n');
  t.equal(statusOf(res), 200);
});
