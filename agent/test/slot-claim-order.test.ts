// Regression: a claim deletes the instance's warm slot and writes its claim in one
// transaction, but the cache watches slots and claims apart, so the slot's deletion may
// arrive first. The agent took that for a lost slot and destroyed the instance under its new
// session. It now asks the store before destroying on a missing slot.
import t from 'tap';
import { newSessionId, type ServiceSpec } from '@warmpool/registry';
import { lateEvents, startUnitAgent, until } from './unit-agent.js';

const PREFIX = '/unit-order/';
const spec: ServiceSpec = {
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm: 1, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 },
};

t.test('a claim whose slot deletion the agent sees before the claim keeps its instance', async (t) => {
  // The agent sees claims 400 ms late (slots on time).
  const { registry, cache, runtime, markReady } = await startUnitAgent(t, { prefix: PREFIX, view: (s) => lateEvents(s, 400, (p) => p.includes('/claims/')) });
  await registry.putService(spec);
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  await until(() => instances().length === 1 && !!instances()[0]!.address, 'an instance booting');
  const id = instances()[0]!.id;
  await markReady(id);
  await until(() => instances().find((i) => i.id === id)?.state === 'ready', 'ready');

  const claim = await registry.claim({ service: 'chat', sessionId: newSessionId() });
  t.ok(claim.ok && claim.instance.id === id, 'claimed');
  // The replacement boots; the claimed instance is marked claimed, never destroyed.
  await until(() => instances().some((i) => i.id !== id), `a replacement for the claimed instance: ${JSON.stringify(instances().map((i) => [i.id, i.state, i.slot]))}`);
  await until(() => instances().find((i) => i.id === id)?.state === 'claimed', 'the instance marked claimed');
  t.equal(runtime.byRole('app').filter((c) => c.spec.labels['warmpool.instance'] === id && c.running).length, 1, 'its container still runs');
});
