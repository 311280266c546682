import { randomBytes } from 'node:crypto';
import { Registry, newSessionId, parseServiceSpec, type HostSession, type InstanceRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { startEtcd, eventually } from '../src/index.js';
import { emit, load, round, summarize } from './stats.js';

/**
 * registry-claims: claims/s and claim latency of Registry.claim against a real etcd, next
 * to the raw etcd transaction (a bare create-if-absent txn through the same client) measured
 * in the same run, at concurrency 1, 32 and 128.
 */
export async function run(args: string[]): Promise<void> {
  const scale = Number(args[0] ?? 1);
  const plan: { concurrency: number; n: number }[] = [
    { concurrency: 1, n: Math.round(300 * scale) },
    { concurrency: 32, n: Math.round(2000 * scale) },
    { concurrency: 128, n: Math.round(2000 * scale) },
  ];
  const etcd = await startEtcd();
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/bench-${randomBytes(4).toString('hex')}/`;
  const reg = new Registry(store, { prefix });
  let host: HostSession | undefined;
  try {
    const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('bad spec');
    await reg.putService(spec.spec);
    const cache = await reg.cache();
    host = await reg.openHost({ id: 'bench-host', address: '127.0.0.1', capacity: { instances: 100_000, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'bench' }, 60);
    const total = plan.reduce((a, p) => a + p.n, 0);
    const h = host;
    await load(async (i) => {
      const rec: InstanceRecord = { id: `i${i}`, service: 'chatbot', host: 'bench-host', state: 'ready', address: `127.0.0.1:${10000 + (i % 50000)}`, containerId: '', slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 0 };
      // As an agent does when an instance turns ready: a pre-granted session lease.
      await h.putInstance(rec, { sessionLeaseTtlSec: 600 });
    }, total, 64);
    await eventually(() => cache.ready.count('chatbot') === total, { timeoutMs: 60_000, what: 'instances in cache' });
    emit({ bench: 'registry-claims', phase: 'setup', readyInstances: total });

    const results: Record<number, { claim: ReturnType<typeof summarize> & { perSec: number }; raw: ReturnType<typeof summarize> & { perSec: number } }> = {};
    for (const { concurrency, n } of plan) {
      const rawPrefix = `${prefix}raw/${concurrency}/`;
      const raw = await load(async (i) => {
        const key = `${rawPrefix}${i}`;
        const r = await store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: '{"raw":true}' }]);
        if (!r.succeeded) throw new Error('raw txn failed');
      }, n, concurrency);
      const claims = await load(async () => {
        const r = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
        if (!r.ok) throw new Error(r.reason);
      }, n, concurrency);
      const row = {
        claim: { ...summarize(claims.latencies), perSec: claims.perSec },
        raw: { ...summarize(raw.latencies), perSec: raw.perSec },
      };
      results[concurrency] = row;
      emit({ bench: 'registry-claims', concurrency, claims: row.claim, rawTxn: row.raw, claimErrors: claims.errors, rawErrors: raw.errors });
    }
    const c1 = results[1]!;
    const c32 = results[32]!;
    const c128 = results[128]!;
    emit({
      bench: 'registry-claims',
      summary: true,
      claimsPerSec: c32.claim.perSec,
      rawTxnPerSec: c32.raw.perSec,
      rateRatio: round(c32.claim.perSec / c32.raw.perSec),
      p50Ms: c1.claim.p50Ms,
      rawP50Ms: c1.raw.p50Ms,
      latencyRatio: round(c1.claim.p50Ms / c1.raw.p50Ms),
      p99Ms: c1.claim.p99Ms,
      rawP99Ms: c1.raw.p99Ms,
      claimsPerSecAt128: c128.claim.perSec,
      rawTxnPerSecAt128: c128.raw.perSec,
      targets: { rateRatio: '>= 0.7', latencyRatio: '<= 1.5' },
    });
  } finally {
    await host?.close({ revoke: true }).catch(() => undefined);
    await reg.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    await etcd.stop();
  }
}
