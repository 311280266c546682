import t from 'tap';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { AddressInfo } from 'node:net';
import { SessionForwarder } from '../src/session-forwarder.js';
import { createMetrics } from '../src/metrics.js';
import type { UpstreamProxy } from '../src/proxy-adapter.js';
import type { SessionRecord } from '@warmpool/registry';

t.test('a long streaming response keeps its session alive until it closes', async (t) => {
  // An upstream that streams for 2.5 s: longer than the third of the idle timeout (1 s).
  const proxy: UpstreamProxy = {
    register: async () => undefined,
    web: (_request: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let n = 0;
      const iv = setInterval(() => {
        res.write(`data: ${n++}\n\n`);
        if (n === 5) { clearInterval(iv); res.end(); }
      }, 500);
    },
    ws: () => undefined,
    close: () => undefined,
  } as unknown as UpstreamProxy;
  const touched: number[] = [];
  const fwd = new SessionForwarder(proxy, createMetrics({ waiting: () => new Map(), activeSessions: () => new Map(), registryConnected: () => 1 }, { defaultMetrics: false }), 1024, () => touched.push(Date.now()));
  const session = { id: 'AAAAAAAAAAAAAAAAAAAAAA', idleTimeoutSec: 3, address: '127.0.0.1:1' } as SessionRecord;
  const app = Fastify();
  app.get('/', async (request, reply) => fwd.web(request, reply, session, 'cred', '/'));
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const res = await fetch(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`);
  const body = await res.text();
  t.equal(body.split('\n\n').filter(Boolean).length, 5, 'stream arrived whole');
  t.ok(touched.length >= 2, `session touched during the stream (${touched.length}x)`);
  const after = touched.length;
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(touched.length, after, 'no touches after the response closed');
});
