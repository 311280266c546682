// Regression (found by pool-burst's etcd outage): an instance retired while the registry
// was away lost its warm slot locally (the slot was forgotten before its delete reached
// etcd) and the retry deleted only the record. The slot stayed in etcd on the host's live
// lease, naming no instance: every agent counted the pool as full and it never refilled.
// The periodic full check now frees slots (and records) of this host that name no instance.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryKvStore, Registry, instanceKey, type KvStore, type ServiceSpec } from '@warmpool/registry';
import { reportToken } from '@warmpool/sidecar/protocol';
import { startAgent } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

const PREFIX = '/unit-orphan/';
const spec = (warm: number): ServiceSpec => ({
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
});

/** The store as the agent sees it: while `away.on`, reads and writes of warm slots fail as if etcd were down. */
function flakySlots(store: KvStore, away: { on: boolean }): KvStore {
  const down = (): Promise<never> => Promise.reject(new Error('registry unavailable (test)'));
  return new Proxy(store, {
    get: (target, prop) => {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === 'get') return (key: string) => (away.on && key.includes('/slots/') ? down() : target.get(key));
      if (prop === 'txn') {
        return (...a: Parameters<KvStore['txn']>) => (away.on && a[1].some((op) => op.key.includes('/slots/')) ? down() : target.txn(...a));
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function until(fn: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a warm slot left behind by a retire that failed half-way is freed, and the pool refills', async (t) => {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-orphan-'));
  const away = { on: false };
  const agent = await startAgent({
    store: flakySlots(store, away), prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1',
    capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: { resyncMs: 300, strayGraceMs: 60_000, backoffBaseMs: 100, backoffMaxMs: 500, dockerRetryMs: 20 },
  });
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const secret = await registry.clusterSecret();
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  const slots = () => [...cache.slots.values()].map((v) => v.value);
  const markReady = (id: string) => postReport(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, state: 'ready', bootMs: 5, at: Date.now() });

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
