import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Registry, parseServiceSpec, type HostSession, type InstanceRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, startEtcd } from '../src/index.js';
import { emit, load, round, summarize } from './stats.js';
import { cpuMs, startServer, type Child } from './router-servers.js';
import { startRouterProcess } from './router-proxy.js';

/** One request; resolves with the time to the first byte of the response (its status line) in ms. */
function ttfb(agent: http.Agent, port: number, method: string, path: string, body?: string): Promise<{ ms: number; status: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const ms = performance.now() - t0;
      res.resume();
      res.on('end', () => resolve({ ms, status: res.statusCode ?? 0 }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * router-claim: new sessions through 3 router processes sharing one etcd and a large warm
 * pool of registered ready instances. Measures, in the same run: the raw etcd transaction
 * (create-if-absent through the registry's own EtcdKvStore) at concurrency 1 and 64; the
 * time to first byte of POST /v1/sessions at concurrency 1; the time to first byte of a new
 * user's first request (implicit session: claim + proxy to the instance) at concurrency 1;
 * and claims/s at concurrency 64 spread over the 3 routers.
 * Args: [scale (1)] — multiplies the request counts.
 */
export async function run(args: string[]): Promise<void> {
  const scale = Number(args[0] ?? 1);
  const nSeq = Math.round(300 * scale);
  const nLoad = Math.round(3000 * scale);
  const concurrency = 64;
  const poolSize = nSeq * 2 + nLoad + 200;
  const etcd = await startEtcd();
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/bench-${randomBytes(4).toString('hex')}/`;
  const agent = new Registry(store, { prefix });
  const started: Child[] = [];
  let host: HostSession | undefined;
  try {
    const upstream = await startServer('upstream');
    started.push(upstream);
    const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('bad spec');
    await agent.putService(spec.spec);
    await agent.clusterSecret();
    host = await agent.openHost({ id: 'bench-host', address: '127.0.0.1', capacity: { instances: poolSize, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'bench' }, 60);
    const h = host;
    await load(async (i) => {
      const rec: InstanceRecord = {
        id: `i${i}`, service: 'chatbot', host: 'bench-host', state: 'ready', address: `127.0.0.1:${upstream.port}`, containerId: '', slot: null,
        createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
      };
      // As the agent does when an instance turns ready: a pre-granted session lease.
      await h.putInstance(rec, { sessionLeaseTtlSec: 600 });
    }, poolSize, 64);
    const routers: Child[] = [];
    for (let i = 0; i < 3; i++) routers.push(await startRouterProcess(etcd.endpoints, prefix, { WARMPOOL_DEFAULT_SERVICE: 'chatbot' }));
    started.push(...routers);
    await eventually(async () => {
      for (const r of routers) {
        const res = await fetch(`http://127.0.0.1:${r.port}/v1/services`);
        const body = (await res.json()) as { services: { readyUnclaimed: number }[] };
        if (body.services[0]?.readyUnclaimed !== poolSize) return false;
      }
      return true;
    }, { timeoutMs: 60_000, intervalMs: 200, what: 'routers see the whole pool' });
    emit({ bench: 'router-claim', phase: 'setup', routers: 3, readyInstances: poolSize });

    // Raw etcd transaction, same run, same client library and store adapter.
    const rawKey = (c: number, i: number): string => `${prefix}raw/${c}/${i}`;
    const raw1 = await load(async (i) => {
      const key = rawKey(1, i);
      const r = await store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: '{"raw":true}' }]);
      if (!r.succeeded) throw new Error('raw txn failed');
    }, nSeq, 1);
    const rawN = await load(async (i) => {
      const key = rawKey(concurrency, i);
      const r = await store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: '{"raw":true}' }]);
      if (!r.succeeded) throw new Error('raw txn failed');
    }, nLoad, concurrency);
    const rawSeq = summarize(raw1.latencies);
    emit({ bench: 'router-claim', phase: 'raw-txn', concurrency: 1, ...rawSeq, perSec: raw1.perSec });
    emit({ bench: 'router-claim', phase: 'raw-txn', concurrency, ...summarize(rawN.latencies), perSec: rawN.perSec });

    const agents = routers.map(() => new http.Agent({ keepAlive: true, maxSockets: concurrency }));
    const post = (i: number): Promise<{ ms: number; status: number }> =>
      ttfb(agents[i % 3]!, routers[i % 3]!.port, 'POST', '/v1/sessions', '{"service":"chatbot"}');

    // New session via the API, one at a time (TTFB = claim latency seen by the client).
    const postTimes: number[] = [];
    const seq = await load(async (i) => {
      const r = await post(i);
      if (r.status !== 201) throw new Error(`status ${r.status}`);
      postTimes.push(r.ms);
    }, nSeq, 1);
    const postSeq = summarize(postTimes);
    emit({ bench: 'router-claim', phase: 'post-sessions', concurrency: 1, ttfb: postSeq, perSec: seq.perSec, errors: seq.errors });

    // A new user's first request: implicit session, claim + proxy, TTFB from the instance.
    const implicitTimes: number[] = [];
    const imp = await load(async (i) => {
      // A fresh agent per request: no cookie, no session, a cold client like a new browser.
      const r = await ttfb(agents[i % 3]!, routers[i % 3]!.port, 'GET', '/v1/models');
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      implicitTimes.push(r.ms);
    }, nSeq, 1);
    const implicit = summarize(implicitTimes);
    emit({ bench: 'router-claim', phase: 'implicit-first-request', concurrency: 1, ttfb: implicit, perSec: imp.perSec, errors: imp.errors });

    // Throughput: many clients at once over the 3 routers. CPU time per claim of each
    // party, to see which one limits the rate on this machine.
    const etcdPids = etcd.members.map((m) => m.proc?.pid).filter((p): p is number => p !== undefined);
    const cpuOf = (): { routers: number; etcd: number; client: number } => ({
      routers: routers.reduce((a, r) => a + cpuMs(r.proc.pid!), 0),
      etcd: etcdPids.reduce((a, p) => a + cpuMs(p), 0),
      client: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
    });
    const cpu0 = cpuOf();
    const loadTimes: number[] = [];
    const burst = await load(async (i) => {
      const r = await post(i);
      if (r.status !== 201) throw new Error(`status ${r.status}`);
      loadTimes.push(r.ms);
    }, nLoad, concurrency);
    const loaded = summarize(loadTimes);
    const cpu1 = cpuOf();
    const cpuUsPerClaim = (k: 'routers' | 'etcd' | 'client'): number => round(((cpu1[k] - cpu0[k]) * 1000) / nLoad, 1);
    emit({ bench: 'router-claim', phase: 'post-sessions', concurrency, ttfb: loaded, perSec: burst.perSec, errors: burst.errors });
    for (const a of agents) a.destroy();

    emit({
      bench: 'router-claim',
      summary: true,
      routers: 3,
      readyInstances: poolSize,
      claimsPerSec: burst.perSec,
      claimConcurrency: concurrency,
      rawTxnPerSecSameConcurrency: rawN.perSec,
      claimsVsRawTxnRate: round(burst.perSec / rawN.perSec),
      ttfbP50Ms: postSeq.p50Ms,
      ttfbP99Ms: postSeq.p99Ms,
      rawTxnP50Ms: rawSeq.p50Ms,
      rawTxnP99Ms: rawSeq.p99Ms,
      ttfbRatio: round(postSeq.p50Ms / rawSeq.p50Ms),
      implicitTtfbP50Ms: implicit.p50Ms,
      implicitTtfbP99Ms: implicit.p99Ms,
      implicitTtfbRatio: round(implicit.p50Ms / rawSeq.p50Ms),
      loadedTtfbP50Ms: loaded.p50Ms,
      loadedTtfbP99Ms: loaded.p99Ms,
      cpuUsPerClaim: { routers: cpuUsPerClaim('routers'), etcd: cpuUsPerClaim('etcd'), benchClient: cpuUsPerClaim('client') },
      errors: seq.errors + imp.errors + burst.errors,
      targets: { ttfbRatio: 3, claimsPerSec: 500 },
    });
  } finally {
    await Promise.all(started.map((c) => c.stop()));
    await host?.close({ revoke: true }).catch(() => undefined);
    await agent.close();
    await store.close();
    await etcd.stop();
  }
}
