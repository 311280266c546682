// Regression: a claim deletes the instance's warm slot and writes its claim in one
// transaction, but the cache watches slots and claims apart, so the slot's deletion may
// arrive first. The agent took that for a lost slot and destroyed the instance under its new
// session. It now asks the store before destroying on a missing slot.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryKvStore, Registry, instanceKey, newSessionId, type KvStore, type KvWatchHandlers, type ServiceSpec } from '@warmpool/registry';
import { reportToken } from '@warmpool/sidecar/protocol';
import { startAgent } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

const PREFIX = '/unit-order/';
const spec: ServiceSpec = {
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm: 1, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
};

/** The store as the agent sees it: events under claims/ arrive `delayMs` late. */
function lateClaims(store: KvStore, delayMs: number): KvStore {
  const watch = (prefix: string, after: string, handlers: KvWatchHandlers) => store.watch(prefix, after, !prefix.includes('/claims/') ? handlers : {
    ...handlers,
    onEvents: (events, revision) => { setTimeout(() => handlers.onEvents(events, revision), delayMs); },
  });
  // Every other call goes to the store itself (bound: its state stays its own).
  return new Proxy(store, {
    get: (target, prop) => {
      if (prop === 'watch') return watch;
      // Without range watches, so that the cache watches claims/ (and slots/) on their own.
      if (prop === 'watchRange') return undefined;
      const v = Reflect.get(target, prop, target) as unknown;
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

t.test('a claim whose slot deletion the agent sees before the claim keeps its instance', async (t) => {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-order-'));
  const agent = await startAgent({
    store: lateClaims(store, 400), prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1',
    capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 300, backoffMaxMs: 2000, dockerRetryMs: 20 },
  });
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const secret = await registry.clusterSecret();
  await registry.putService(spec);
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  await until(() => instances().length === 1 && !!instances()[0]!.address, 'an instance booting');
  const id = instances()[0]!.id;
  await postReport(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, state: 'ready', bootMs: 5, at: Date.now() });
  await until(() => instances().find((i) => i.id === id)?.state === 'ready', 'ready');

  const claim = await registry.claim({ service: 'chat', sessionId: newSessionId() });
  t.ok(claim.ok && claim.instance.id === id, 'claimed');
  // The replacement boots; the claimed instance is marked claimed, never destroyed.
  await until(() => instances().some((i) => i.id !== id), `a replacement for the claimed instance: ${JSON.stringify(instances().map((i) => [i.id, i.state, i.slot]))}`);
  await until(() => instances().find((i) => i.id === id)?.state === 'claimed', 'the instance marked claimed');
  t.equal(runtime.byRole('app').filter((c) => c.spec.labels['warmpool.instance'] === id && c.running).length, 1, 'its container still runs');
});
