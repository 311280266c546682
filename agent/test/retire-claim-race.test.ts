// Regression (found by mesh-sessions under load): a claim lands on a ready instance that the
// agent retires as surplus before its cache shows the claim (claims and slots arrive late
// here). The retirement wrote the record as draining, deleted it and revoked the instance's
// pre-granted session lease, which the claim had put the session's records on: the session
// vanished (404 "no such session", no tombstone) right after its 201. The agent now takes an
// instance out of the ready set only in a transaction with "no claim", and keeps a claimed
// one for its session.
import t from 'tap';
import { newSessionId, type ServiceSpec } from '@warmpool/registry';
import { lateEvents, startUnitAgent, until } from './unit-agent.js';

const PREFIX = '/unit-retire/';
const spec: ServiceSpec = {
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm: 1, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
};

t.test('an instance claimed just before the agent retires it stays with its session', async (t) => {
  // The agent sees claims and slots 1.5 s late.
  const { registry, cache, runtime, store, markReady } = await startUnitAgent(t, {
    prefix: PREFIX, view: (s) => lateEvents(s, 1500, (p) => p.includes('/claims/') || p.includes('/slots/')),
  });
  await registry.putService(spec);
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  await until(() => instances().length === 1 && !!instances()[0]!.address, 'an instance booting');
  const id = instances()[0]!.id;
  await markReady(id);
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
