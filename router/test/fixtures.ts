// Test fixtures: a registry on MemoryKvStore with ready instances that are plain Node HTTP
// servers checking the sidecar credential, and a router built on it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  CREDENTIAL_HEADER, MemoryKvStore, Registry, instanceKey, parseServiceSpec, verifyCredential,
  type HostSession, type InstanceRecord, type ServiceSpec,
} from '@warmpool/registry';
import { buildRouter, type BuildRouterOptions, type WarmpoolRouter } from '../src/index.js';

export interface FakeInstance {
  id: string;
  address: string;
  server: http.Server;
  /** Requests that passed the credential check. */
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  /** Requests whose upstream connection closed before the response finished. */
  aborted: string[];
  /** URLs whose response the instance has written completely. */
  finished: string[];
  /** /firehose: bytes its socket has taken so far, by URL. */
  written: Map<string, number>;
  close(): Promise<void>;
}

/**
 * An instance as the router sees it through the sidecar: 401 without the right credential;
 * otherwise JSON echo of the request, `X-Instance-Id`, plus a few behaviours by path:
 * /sse?n=N&gapMs=M (events; &firstAfterMs=F: the head at once, the first event F ms later), /hang (never answers), /drip (headers, then one chunk, then hangs;
 * ?n=N: chunks c0..cN-1 20 ms apart, then hangs), /big?bytes=N, /fixed?bytes=N&gapMs=M (a
 * Content-Length, half the body, the rest M ms later), /partial (Content-Length 100, 10
 * bytes, then hangs), /firehose?bytes=N&chunk=K (N bytes of `firehoseByte` without a length,
 * K at a time, as fast as the socket takes them: each write waits for 'drain').
 */
export async function startFakeInstance(secret: () => string | undefined, id: string): Promise<FakeInstance> {
  const seen: FakeInstance['seen'] = [];
  const aborted: string[] = [];
  const finished: string[] = [];
  const written = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const s = secret();
    const sessionId = s ? verifyCredential(instanceKey(s, id), req.headers[CREDENTIAL_HEADER] as string | undefined) : undefined;
    res.setHeader('x-instance-id', id);
    if (!sessionId) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'bad credential' }));
      req.resume();
      return;
    }
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    res.on('close', () => { if (!res.writableFinished) aborted.push(req.url ?? ''); });
    res.on('finish', () => finished.push(req.url ?? ''));
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/hang') return;
    if (url.pathname === '/drip') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const n = url.searchParams.get('n');
      if (n === null) {
        res.write('first');
        return;
      }
      let i = 0;
      const tick = (): void => {
        if (i >= Number(n) || res.destroyed) return;
        res.write(`c${i++}`);
        setTimeout(tick, 20);
      };
      tick();
      return;
    }
    if (url.pathname === '/firehose') {
      const total = Number(url.searchParams.get('bytes') ?? 1 << 20);
      const chunk = Number(url.searchParams.get('chunk') ?? 16 * 1024);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const key = req.url ?? '';
      let at = 0;
      const pump = (): void => {
        while (at < total && !res.destroyed) {
          const piece = Buffer.allocUnsafe(Math.min(chunk, total - at));
          for (let i = 0; i < piece.length; i++) piece[i] = firehoseByte(at + i);
          at += piece.length;
          const more = res.write(piece);
          written.set(key, at);
          if (!more) { res.once('drain', pump); return; }
        }
        if (at >= total) res.end();
      };
      pump();
      return;
    }
    if (url.pathname === '/sse') {
      const n = Number(url.searchParams.get('n') ?? 3);
      const gap = Number(url.searchParams.get('gapMs') ?? 20);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const firstAfter = url.searchParams.get('firstAfterMs');
      if (firstAfter !== null) {
        // The head now, the first event later (a model server's prefill).
        res.flushHeaders();
        let i = 0;
        const tick = (): void => {
          if (res.destroyed) return;
          if (i >= n) { res.end('data: [DONE]\n\n'); return; }
          res.write(`data: ${JSON.stringify({ i: i++, at: Date.now() })}\n\n`);
          setTimeout(tick, gap);
        };
        setTimeout(tick, Number(firstAfter));
        return;
      }
      let i = 0;
      const tick = (): void => {
        if (res.destroyed) return;
        if (i >= n) { res.end('data: [DONE]\n\n'); return; }
        res.write(`data: ${JSON.stringify({ i: i++, at: Date.now() })}\n\n`);
        setTimeout(tick, gap);
      };
      tick();
      return;
    }
    if (url.pathname === '/fixed') {
      const body = Buffer.alloc(Number(url.searchParams.get('bytes') ?? 100), 121);
      const half = body.length >> 1;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.write(body.subarray(0, half));
      setTimeout(() => res.end(body.subarray(half)), Number(url.searchParams.get('gapMs') ?? 200));
      return;
    }
    if (url.pathname === '/partial') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100 });
      res.write('0123456789');
      return;
    }
    if (url.pathname === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(Number(url.searchParams.get('bytes') ?? 1024), 120));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      res.writeHead(200, { 'content-type': 'application/json', 'keep-alive': 'timeout=5', 'x-custom': 'yes' });
      res.end(JSON.stringify({ instanceId: id, sessionId, method: req.method, url: req.url, headers: req.headers, body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    id, address: `127.0.0.1:${port}`, server, seen, aborted, finished, written,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** Byte `i` of a /firehose body: a pattern that a reordered or lost chunk breaks. */
export function firehoseByte(i: number): number {
  return (i * 31 + (i >>> 12)) & 0xff;
}

export function testSpec(over: Partial<ServiceSpec> & { name?: string } = {}): ServiceSpec {
  const r = parseServiceSpec({ name: over.name ?? 'chatbot', image: 'warmpool/chatbot-demo' });
  if (!r.ok) throw new Error('bad spec');
  return { ...r.spec, ...over };
}

export interface Harness {
  app: WarmpoolRouter;
  store: MemoryKvStore;
  /** The router's registry. */
  registry: Registry;
  /** The agent side: writes services and instances. */
  agent: Registry;
  host: HostSession;
  instances: FakeInstance[];
  secret(): string;
  /** Starts a fake instance and registers it (ready unless told otherwise). */
  addInstance(opts?: { service?: string; state?: InstanceRecord['state']; createdAt?: number; bootMs?: number | null }): Promise<FakeInstance>;
  setState(inst: FakeInstance, state: InstanceRecord['state'], service?: string): Promise<void>;
  close(): Promise<void>;
}

let counter = 0;

export async function harness(opts: {
  ready?: number;
  services?: ServiceSpec[];
  router?: Omit<BuildRouterOptions, 'registry'>;
  listen?: boolean;
} = {}): Promise<Harness> {
  const store = new MemoryKvStore();
  const agent = new Registry(store, { touchFlushMs: 50 });
  const registry = new Registry(store, { touchFlushMs: 50 });
  for (const s of opts.services ?? [testSpec()]) await agent.putService(s);
  const secretValue = await agent.clusterSecret();
  const host = await agent.openHost({
    id: 'host-a', address: '127.0.0.1', capacity: { instances: 100, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'test',
  });
  const instances: FakeInstance[] = [];
  const records = new Map<string, InstanceRecord>();
  const h: Harness = {
    app: undefined as unknown as WarmpoolRouter,
    store, registry, agent, host, instances,
    secret: () => secretValue,
    async addInstance(o = {}) {
      const id = `inst-${++counter}`;
      const inst = await startFakeInstance(() => secretValue, id);
      instances.push(inst);
      const rec: InstanceRecord = {
        id, service: o.service ?? 'chatbot', host: 'host-a', state: o.state ?? 'ready', address: inst.address, containerId: `c-${id}`,
        slot: null, createdAt: o.createdAt ?? Date.now(), readyAt: (o.state ?? 'ready') === 'ready' ? Date.now() : null,
        bootMs: o.bootMs === undefined ? 1000 : o.bootMs,
      };
      records.set(id, rec);
      await host.putInstance(rec);
      return inst;
    },
    async setState(inst, state) {
      const rec = { ...records.get(inst.id)!, state, readyAt: state === 'ready' ? Date.now() : null };
      records.set(inst.id, rec);
      await host.putInstance(rec);
    },
    async close() {
      await h.app.close();
      await registry.close();
      await host.close({ revoke: true });
      await agent.close();
      await store.close();
      await Promise.all(instances.map((i) => i.close()));
    },
  };
  for (let i = 0; i < (opts.ready ?? 2); i++) await h.addInstance();
  h.app = buildRouter({ registry, ...opts.router });
  if (opts.listen) await h.app.listen({ port: 0, host: '127.0.0.1' });
  else await h.app.ready();
  await h.app.warmpool.directory.cache();
  return h;
}

export function routerUrl(app: WarmpoolRouter): string {
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}
