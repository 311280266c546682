// The router's own hop to an instance, over real sockets (regressions of issue 13): a
// kept-alive connection the instance dropped while idle loses no replayable request;
// errors of the router's own HTTP client are never blamed on the instance; CONNECT is
// answered. (The whole path through the real sidecar: test/e2e/router-sidecar-http.test.ts.)
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { errors as undiciErrors } from 'undici';
import { upstreamCodeOf } from '../src/errors.js';
import { harness, routerUrl, type Harness } from './fixtures.js';

async function sessionOn(h: Harness, id: string, address: string): Promise<string> {
  await h.host.putInstance({
    id, service: 'chatbot', host: 'host-a', state: 'ready', address, containerId: `c-${id}`, slot: null,
    createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
  });
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${routerUrl(h.app)}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
    if (res.status === 201) {
      const s = (await res.json()) as { sessionId: string; instanceId: string };
      if (s.instanceId !== id) throw new Error(`claimed ${s.instanceId}`);
      return s.sessionId;
    }
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no session on ${id}`);
}

t.test('an instance that drops requests arriving on a connection idle for 300 ms: replayable requests are sent again', async (t) => {
  const h = await harness({ ready: 0, listen: true });
  t.teardown(() => h.close());
  const idleSince = new WeakMap<Socket, number>();
  const seen: string[] = [];
  // No Keep-Alive hint (keepAliveTimeout 0): the router cannot know the instance's limit.
  const server = http.createServer((req, res) => {
    const since = idleSince.get(req.socket);
    if (since !== undefined && Date.now() - since >= 300) { req.socket.destroy(); return; }
    idleSince.delete(req.socket);
    req.resume();
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      res.end('ok');
    });
    res.on('finish', () => idleSince.set(req.socket, Date.now()));
  });
  server.keepAliveTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const sid = await sessionOn(h, 'dropper-1', `127.0.0.1:${(server.address() as AddressInfo).port}`);
  const base = `${routerUrl(h.app)}/v1/sessions/${sid}/proxy`;
  const statuses: string[] = [];
  for (const method of ['GET', 'GET', 'HEAD', 'DELETE', 'OPTIONS']) {
    const res = await fetch(`${base}/r`, { method });
    await res.arrayBuffer();
    statuses.push(`${method} ${res.status}`);
    await new Promise((r) => setTimeout(r, 450));
  }
  t.same(statuses, ['GET 200', 'GET 200', 'HEAD 200', 'DELETE 200', 'OPTIONS 200'], 'every replayable request answered');
  t.equal(seen.length, 5, 'each reached the instance once');
});

t.test('errors of the router\'s own HTTP client are not the instance\'s fault', async (t) => {
  t.equal(upstreamCodeOf(new undiciErrors.NotSupportedError('expect header not supported')), 'WARMPOOL_INTERNAL');
  t.equal(upstreamCodeOf(new undiciErrors.InvalidArgumentError('invalid connection header')), 'WARMPOOL_INTERNAL');
  t.equal(upstreamCodeOf(new undiciErrors.ClientDestroyedError()), 'WARMPOOL_SHUTTING_DOWN');
  t.equal(upstreamCodeOf(new undiciErrors.ClientClosedError()), 'WARMPOOL_SHUTTING_DOWN');
  t.equal(upstreamCodeOf(Object.assign(new TypeError('bad header'), { code: 'ERR_INVALID_CHAR' })), 'WARMPOOL_INTERNAL');
  // The instance's own faults stay its own.
  t.equal(upstreamCodeOf(new undiciErrors.ResponseContentLengthMismatchError()), 'WARMPOOL_INSTANCE_BAD_RESPONSE');
  t.equal(upstreamCodeOf(new undiciErrors.HeadersOverflowError()), 'WARMPOOL_INSTANCE_BAD_RESPONSE');
  t.equal(upstreamCodeOf(new undiciErrors.SocketError('other side closed')), 'WARMPOOL_INSTANCE_UNREACHABLE');
});

t.test('CONNECT is answered with 405, not a dropped connection', async (t) => {
  const h = await harness({ ready: 0, listen: true });
  t.teardown(() => h.close());
  const port = (h.app.server.address() as AddressInfo).port;
  const answer = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n'));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
  });
  t.match(answer, /^HTTP\/1\.1 405 /, 'a 405');
  t.match(answer, /WARMPOOL_METHOD_NOT_ALLOWED/);
});
