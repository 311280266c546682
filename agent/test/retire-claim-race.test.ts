// Regression (found by mesh-sessions under load): a claim lands on a ready instance that the
// agent retires as surplus before its cache shows the claim (claims and slots arrive late
// here). The retirement wrote the record as draining, deleted it and revoked the instance's
// pre-granted session lease, which the claim had put the session's records on: the session
// vanished (404 "no such session", no tombstone) right after its 201. The agent now takes an
// instance out of the ready set only in a transaction with "no claim", and keeps a claimed
// one for its session.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryKvStore, Registry, instanceKey, newSessionId, type KvStore, type KvWatchHandlers, type ServiceSpec } from '@warmpool/registry';
import { reportToken } from '@warmpool/sidecar/protocol';
import { startAgent } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

const PREFIX = '/unit-retire/';
const spec: ServiceSpec = {
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm: 1, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
};

/** The store as the agent sees it: events under claims/ and slots/ arrive `delayMs` late. */
function lateClaimsAndSlots(store: KvStore, delayMs: number): KvStore {
  const late = (prefix: string) => prefix.includes('/claims/') || prefix.includes('/slots/');
  const watch = (prefix: string, after: string, handlers: KvWatchHandlers) => store.watch(prefix, after, !late(prefix) ? handlers : {
    ...handlers,
    onEvents: (events, revision) => { setTimeout(() => handlers.onEvents(events, revision), delayMs); },
  });
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

t.test('an instance claimed just before the agent retires it stays with its session', async (t) => {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-retire-'));
  const agent = await startAgent({
    store: lateClaimsAndSlots(store, 1500), prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1',
    capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5, ...(process.env.DEBUG_AGENT ? { logger: (await import('pino')).pino({ level: 'debug' }) } : {}),
    timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 300, backoffMaxMs: 2000, dockerRetryMs: 20 },
  });
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const secret = await registry.clusterSecret();
  await registry.putService(spec);
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  await until(() => instances().length === 1 && !!instances()[0]!.address, 'an instance booting');
  const id = instances()[0]!.id;
  await postReport(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, state: 'ready', bootMs: 5, at: Date.now() });
  await until(() => instances().find((i) => i.id === id)?.state === 'ready' && !!instances()[0]!.sessionLease, 'ready, with a pre-granted session lease');

  const sessionId = newSessionId();
  const claim = await registry.claim({ service: 'chat', sessionId });
  t.ok(claim.ok && claim.instance.id === id, 'claimed (on the instance\'s pre-granted lease)');
  // The agent, not seeing the claim yet, finds the instance surplus at once.
  await registry.putService({ ...spec, warm: 0 });
  await new Promise((r) => setTimeout(r, 2500)); // past the late claim: the agent has acted on both

  const looked = await registry.lookupSession(sessionId);
  t.equal(looked.state, 'active', 'the session still exists');
  await until(() => instances().find((i) => i.id === id)?.state === 'claimed', `the instance marked claimed: ${JSON.stringify(instances().map((i) => [i.id, i.state]))}`);
  t.equal(runtime.byRole('app').filter((c) => c.spec.labels['warmpool.instance'] === id && c.running).length, 1, 'its container still runs');
  t.ok(await store.get(`${PREFIX}claims/chat/${id}`), 'its claim is still in the store');
});
