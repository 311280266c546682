// Stopping a router: responses under way finish, then every client connection closes; none
// is left to idle on (an open connection that never sent a request, or a kept-alive one
// whose last response ended during the stop), so the stop does not wait out a timeout.
import net from 'node:net';
import t from 'tap';
import { harness, routerUrl } from './fixtures.js';

const closed = (s: net.Socket): Promise<void> => new Promise((resolve) => { if (s.destroyed) resolve(); else s.once('close', () => resolve()); });

t.test('stop: connections with nothing under way close at once; a stream under way finishes first', async (t) => {
  // Timeouts far beyond the test's own: a stop that waited for them would time the test out.
  const h = await harness({ ready: 1, listen: true, router: { config: { limits: { headersTimeoutMs: 120_000 } } } });
  t.teardown(() => h.close());
  const { port } = new URL(routerUrl(h.app));
  const s = await (await fetch(`${routerUrl(h.app)}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: '{"service":"chatbot"}' })).json() as { sessionId: string };

  // A connection that never sends a request.
  const silent = net.connect(Number(port), '127.0.0.1');
  silent.on('error', () => undefined);
  await new Promise((r) => silent.once('connect', r));
  // A kept-alive connection between two requests.
  const idle = net.connect(Number(port), '127.0.0.1');
  idle.on('error', () => undefined);
  let idleIn = '';
  idle.on('data', (d: Buffer) => { idleIn += d.toString('latin1'); });
  idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  // A stream under way: five events, 150 ms apart.
  const stream = net.connect(Number(port), '127.0.0.1');
  stream.on('error', () => undefined);
  let streamIn = '';
  stream.on('data', (d: Buffer) => { streamIn += d.toString('latin1'); });
  stream.write(`GET /v1/sessions/${s.sessionId}/proxy/sse?n=5&gapMs=150 HTTP/1.1\r\nHost: x\r\n\r\n`);
  for (let i = 0; i < 200 && (!/\r\n\r\n[\s\S]*"ok"/.test(idleIn) || !streamIn.includes('data: {"i":0')); i++) await new Promise((r) => setTimeout(r, 10));
  t.match(idleIn, /HTTP\/1.1 200/, 'the kept-alive connection served its request');

  const stopping = h.app.close();
  await closed(silent);
  t.pass('the connection that never sent a request is closed');
  await closed(idle);
  t.pass('the idle kept-alive connection is closed');
  await closed(stream);
  t.match(streamIn, /data: \[DONE\]/, 'the stream under way ran to its end before its connection closed');
  await stopping;
  t.pass('the stop completed');
});
