// The cookie route and a browser's stale session cookie (regression of issue 13: after
// the session's idle timeout, or a DELETE, every reload answered 410 with no Set-Cookie
// until the user cleared cookies). Every way a browser can hold a dead session id: ended,
// expired, unknown, malformed; with and without a default service; HTTP and WebSocket.
import net, { type AddressInfo } from 'node:net';
import t from 'tap';
import { newSessionId } from '@warmpool/registry';
import { harness, routerUrl, testSpec, type Harness } from './fixtures.js';

const IDLE_SEC = 2;

function cookieOf(res: Response): { id: string; maxAge: number } | undefined {
  const m = /warmpool_session=([^;]*);.*Max-Age=(\d+)/.exec(res.headers.get('set-cookie') ?? '');
  return m ? { id: m[1]!, maxAge: Number(m[2]) } : undefined;
}

async function get(h: Harness, path: string, headers: Record<string, string> = {}): Promise<{ res: Response; body: string }> {
  const res = await fetch(`${routerUrl(h.app)}${path}`, { headers });
  return { res, body: await res.text() };
}

async function waitUntil(cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('a dead session cookie gets a fresh implicit session (default service)', async (t) => {
  const h = await harness({
    ready: 8, listen: true,
    services: [testSpec({ session: { idleTimeoutSec: IDLE_SEC, maxLifetimeSec: 3600 } })],
    router: { config: { defaultService: 'chatbot' } },
  });
  t.teardown(() => h.close());

  const first = await get(h, '/');
  t.equal(first.res.status, 200);
  const c1 = cookieOf(first.res);
  t.ok(c1, 'an implicit session sets its cookie');
  t.ok(c1!.maxAge > 0 && c1!.maxAge <= IDLE_SEC, `Max-Age ${c1!.maxAge} does not outlive the idle timeout (${IDLE_SEC} s)`);

  const again = await get(h, '/a', { cookie: `warmpool_session=${c1!.id}` });
  t.equal(again.res.status, 200);
  t.equal(cookieOf(again.res)?.id, c1!.id, 'the same session, its cookie renewed with the response');
  t.ok(cookieOf(again.res)!.maxAge <= IDLE_SEC);

  const del = await fetch(`${routerUrl(h.app)}/v1/sessions/${c1!.id}`, { method: 'DELETE' });
  t.equal(del.status, 204);
  const afterDelete = await get(h, '/b', { cookie: `warmpool_session=${c1!.id}` });
  t.equal(afterDelete.res.status, 200, `ended session: ${afterDelete.body}`);
  const c2 = cookieOf(afterDelete.res);
  t.ok(c2 && c2.id !== c1!.id, 'a fresh session in a new cookie');
  t.equal(afterDelete.res.headers.get('x-warmpool-session'), c2?.id);

  for (const [what, id] of [['unknown', newSessionId()], ['malformed', 'not-a-session-id']] as const) {
    const r = await get(h, '/c', { cookie: `other=1; warmpool_session=${id}` });
    t.equal(r.res.status, 200, `${what}: ${r.body}`);
    const c = cookieOf(r.res);
    t.ok(c && c.id !== id, `${what}: a fresh session`);
  }

  // Expired: no traffic for longer than the idle timeout.
  await waitUntil(async () => (await fetch(`${routerUrl(h.app)}/v1/sessions/${c2!.id}`)).status !== 200);
  const afterExpiry = await get(h, '/d', { cookie: `warmpool_session=${c2!.id}` });
  t.equal(afterExpiry.res.status, 200, `expired session: ${afterExpiry.body}`);
  const c3 = cookieOf(afterExpiry.res);
  t.ok(c3 && c3.id !== c2!.id, 'a fresh session');

  // An explicit header is the client's own choice: a dead one is reported, not replaced.
  const explicit = await get(h, '/e', { 'x-warmpool-session': c1!.id });
  t.equal(explicit.res.status, 410, 'header form: 410 as before');
});

t.test('a dead session cookie is cleared when there is no default service', async (t) => {
  const h = await harness({ ready: 2, listen: true });
  t.teardown(() => h.close());
  const created = await fetch(`${routerUrl(h.app)}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
  const { sessionId } = (await created.json()) as { sessionId: string };
  await fetch(`${routerUrl(h.app)}/v1/sessions/${sessionId}`, { method: 'DELETE' });
  for (const [what, id, status] of [['ended', sessionId, 410], ['unknown', newSessionId(), 404], ['malformed', 'x', 400]] as const) {
    const r = await get(h, '/x', { cookie: `warmpool_session=${id}` });
    t.equal(r.res.status, status, what);
    t.match(r.res.headers.get('set-cookie') ?? '', /^warmpool_session=; Path=\/; Max-Age=0/, `${what}: the cookie is cleared`);
  }

  const port = (h.app.server.address() as AddressInfo).port;
  const answer = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(
      `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: warmpool_session=${sessionId}\r\n\r\n`,
    ));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
  });
  t.match(answer, /^HTTP\/1\.1 410 /, 'WebSocket with an ended session: 410');
  t.match(answer, /set-cookie: warmpool_session=; Path=\/; Max-Age=0/i, 'and the cookie is cleared');
});

t.test('a WebSocket upgrade to one of the router\'s own paths is refused, never proxied', async (t) => {
  const h = await harness({ ready: 1, listen: true });
  t.teardown(() => h.close());
  const created = await fetch(`${routerUrl(h.app)}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
  const { sessionId } = (await created.json()) as { sessionId: string };
  const port = (h.app.server.address() as AddressInfo).port;
  for (const path of ['/healthz', '/metrics', '/v1/dashboard/events']) {
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(
        `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Warmpool-Session: ${sessionId}\r\n\r\n`,
      ));
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
    t.match(answer, /^HTTP\/1\.1 404 /, `${path}: 404`);
    t.match(answer, new RegExp(`the router serves no WebSocket at ${path.replace(/\//g, '\\/')}`), `${path}: says why`);
  }
});
