// Regression (found by pool-burst's etcd outage): an instance retired while the registry
// was away lost its warm slot locally (the slot was forgotten before its delete reached
// etcd) and the retry deleted only the record. The slot stayed in etcd on the host's live
// lease, naming no instance: every agent counted the pool as full and it never refilled.
// The periodic full check now frees slots (and records) of this host that name no instance.
import t from 'tap';
import type { KvStore, ServiceSpec } from '@warmpool/registry';
import { startUnitAgent, storeWith, until } from './unit-agent.js';

const PREFIX = '/unit-orphan/';
const spec = (warm: number): ServiceSpec => ({
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
});

/** The store as the agent sees it: while `away.on`, reads and writes of warm slots fail as if etcd were down. */
function flakySlots(store: KvStore, away: { on: boolean }): KvStore {
  const down = (): Promise<never> => Promise.reject(new Error('registry unavailable (test)'));
  return storeWith(store, {
    get: (key: string) => (away.on && key.includes('/slots/') ? down() : store.get(key)),
    txn: (...a: Parameters<KvStore['txn']>) => (away.on && a[1].some((op) => op.key.includes('/slots/')) ? down() : store.txn(...a)),
  });
}

t.test('a warm slot left behind by a retire that failed half-way is freed, and the pool refills', async (t) => {
  const away = { on: false };
  const { registry, cache, markReady } = await startUnitAgent(t, {
    prefix: PREFIX, view: (s) => flakySlots(s, away),
    timing: { resyncMs: 300, strayGraceMs: 60_000, backoffBaseMs: 100, backoffMaxMs: 500, dockerRetryMs: 20 },
  });
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  const slots = () => [...cache.slots.values()].map((v) => v.value);
  await registry.putService(spec(1));
  await until(() => instances().length === 1 && !!instances()[0]!.address, 'an instance booting');
  const first = instances()[0]!.id;
  await markReady(first);
  await until(() => instances()[0]?.state === 'ready', 'ready');

  // The pool shrinks while slot reads fail: the retire cannot hand its slot back.
  away.on = true;
  await registry.putService(spec(0));
  await until(() => instances().length === 0, 'the instance retired');
  t.same(slots().map((s) => s.instanceId), [first], 'its slot is still in the registry, naming no instance');
  away.on = false;

  // Demand returns: the slot is freed by the full check and a new instance boots into it.
  await registry.putService(spec(1));
  await until(() => slots().every((s) => s.instanceId !== first), `the orphaned slot freed: ${JSON.stringify(slots())}`);
  await until(() => instances().some((i) => i.id !== first), 'a new instance boots for the pool');
  t.pass('the pool refilled');
});
