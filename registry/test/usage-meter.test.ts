// UsageMeter keeps per-service instance counts from each registry change (no rescan of the
// fleet): after any sequence of changes they equal a full recount, and the totals integrate
// the counts exactly between changes.
import t from 'tap';
import { UsageMeter, instanceStates } from '../src/pool-cost.js';
import { MemoryKvStore } from '../src/memory-kv.js';
import { Registry } from '../src/registry.js';
import type { ClaimRecord, InstanceRecord, ServiceSpec } from '../src/types.js';

const v = <T>(value: T) => ({ value, modRevision: '1' });
type Cache = {
  services: Map<string, ReturnType<typeof v<ServiceSpec>>>;
  instances: Map<string, ReturnType<typeof v<InstanceRecord>>>;
  claims: Map<string, ReturnType<typeof v<ClaimRecord>>>;
};
const STATES: InstanceRecord['state'][] = ['pulling', 'booting', 'warming', 'ready', 'claimed', 'draining', 'failed'];

/** A seeded PRNG (mulberry32) so that a failing sequence can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('after any sequence of changes the counts equal a full recount', async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const cache: Cache = {
      services: new Map([['gpu', v({ name: 'gpu', resources: { gpus: 2 } } as unknown as ServiceSpec)], ['cpu', v({ name: 'cpu' } as unknown as ServiceSpec)]]),
      instances: new Map(),
      claims: new Map(),
    };
    const meter = new UsageMeter();
    meter.sample(cache, 0);
    let mismatches = 0;
    for (let step = 1; step <= 2000; step++) {
      const id = `i${Math.floor(r() * 40)}`;
      const service = cache.instances.get(id)?.value.service ?? pick(['gpu', 'cpu']);
      const op = r();
      let kind: 'instances' | 'claims' | 'services';
      if (op < 0.4) { cache.instances.set(id, v({ id, service, host: 'h', state: pick(STATES) } as InstanceRecord)); kind = 'instances'; }
      else if (op < 0.55) { cache.instances.delete(id); kind = 'instances'; }
      else if (op < 0.75) { cache.claims.set(id, v({ sessionId: `s-${id}`, service, instanceId: id, claimedAt: 0, ...(r() < 0.3 ? { ended: true } : {}) } as ClaimRecord)); kind = 'claims'; }
      else if (op < 0.98) { cache.claims.delete(id); kind = 'claims'; }
      else {
        cache.services.set('gpu', v({ name: 'gpu', resources: { gpus: 1 + Math.floor(r() * 4) } } as unknown as ServiceSpec));
        meter.apply(cache, { kind: 'services', parts: ['gpu'] }, step);
        continue;
      }
      meter.apply(cache, { kind, parts: [service, id] }, step);
      const want = instanceStates(cache);
      for (const name of ['gpu', 'cpu']) {
        const got = meter.current().get(name) ?? { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 };
        const exp = want.get(name) ?? { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 };
        if (JSON.stringify(got) !== JSON.stringify(exp)) mismatches++;
      }
    }
    t.equal(mismatches, 0, `seed ${seed}: 2,000 random changes, counts equal to a recount after each`);
  }
});

t.test('totals integrate the counts exactly between changes; a clock going back adds nothing', async (t) => {
  const cache: Cache = {
    services: new Map([['gpu', v({ name: 'gpu', resources: { gpus: 2 } } as unknown as ServiceSpec)]]),
    instances: new Map(),
    claims: new Map(),
  };
  const meter = new UsageMeter();
  meter.sample(cache, 1_000);
  const put = (id: string, state: InstanceRecord['state'], at: number) => {
    cache.instances.set(id, v({ id, service: 'gpu', host: 'h', state } as InstanceRecord));
    meter.apply(cache, { kind: 'instances', parts: ['gpu', id] }, at);
  };
  put('a', 'booting', 1_000);
  put('a', 'ready', 5_000); // 4 s booting
  put('b', 'ready', 6_000); // 1 s with one idle
  cache.claims.set('a', v({ sessionId: 's', service: 'gpu', instanceId: 'a', claimedAt: 8_000 } as ClaimRecord));
  meter.apply(cache, { kind: 'claims', parts: ['gpu', 'a'] }, 8_000); // 2 s with two idle
  meter.advance(7_000); // the clock went back: nothing added
  meter.advance(18_000); // 10 s: a busy, b idle
  t.same(meter.totals.get('gpu'), { idleSec: 1 + 4 + 10, busySec: 10, bootingSec: 4, idleGpuSec: 30, busyGpuSec: 20 });
});

t.test('follow: a live cache on a real registry store, updated per change and after a re-list', async (t) => {
  const store = new MemoryKvStore();
  const reg = new Registry(store);
  t.teardown(() => reg.close());
  await reg.putService({ name: 'svc', image: 'x', warm: 1 } as ServiceSpec);
  const host = await reg.openHost({ id: 'h', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const cache = await reg.cache();
  let clock = 0;
  const meter = new UsageMeter();
  const stop = meter.follow(cache, () => clock);
  t.teardown(stop);
  const rec = (id: string, state: InstanceRecord['state']): InstanceRecord =>
    ({ id, service: 'svc', host: 'h', state, address: '127.0.0.1:1', containerId: '', slot: null, createdAt: 0, readyAt: null, bootMs: null });
  const settle = async (want: Partial<{ idle: number; busy: number; booting: number }>) => {
    for (let i = 0; i < 200; i++) {
      const c = meter.current().get('svc');
      if (c && Object.entries(want).every(([k, n]) => c[k as 'idle'] === n)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    t.fail(`counts ${JSON.stringify(meter.current().get('svc'))}, want ${JSON.stringify(want)}`);
  };
  await host.putInstance(rec('a', 'ready'));
  await host.putInstance(rec('b', 'booting'));
  await settle({ idle: 1, booting: 1 });
  clock = 3_000;
  await host.putInstance(rec('b', 'ready'));
  await settle({ idle: 2, booting: 0 });
  clock = 5_000;
  meter.advance(clock);
  t.same(meter.totals.get('svc'), { idleSec: 3 + 4, busySec: 0, bootingSec: 3, idleGpuSec: 0, busyGpuSec: 0 });
  await host.deleteInstance('svc', 'a');
  await cache.resync();
  t.same(meter.current().get('svc')?.idle, instanceStates(cache).get('svc')?.idle ?? 0, 'after a re-list the counts are a recount');
});
