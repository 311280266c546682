// A warm slot that names this host but no instance it runs (a delete that failed while
// etcd was away leaves one on the host's live lease) is freed by the agent's periodic full
// check against a real etcd, and the pool fills again. Without the sweep every agent counts
// the pool as full and it never refills.
import t from 'tap';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

t.test('a stray warm slot of this host is freed and the pool refills', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const agent = h.spawnAgent('host-a', { leaseTtlSec: 15 });
  await h.putService(chatSpec({ warm: 0 }));
  await eventually(() => /agent started/.test(agent.output()), { timeoutMs: 15_000, what: 'agent up' });
  // After start-up, so only the periodic check (every 2 s here) can find it.
  const key = `${h.prefix}slots/chat/0`;
  await h.registry.store.txn([], [{ type: 'put', key, value: JSON.stringify({ service: 'chat', slot: 0, instanceId: 'i-gone', host: 'host-a' }) }]);
  await h.putService(chatSpec({ warm: 1 }));
  await eventually(() => /"msg":"freed a warm slot held for no instance on this host"/.test(agent.output()), { timeoutMs: 30_000, what: 'the stray slot freed' });
  const [ready] = await h.waitReady(1, { timeoutMs: 60_000 });
  const slot = await h.registry.store.get(key);
  t.ok(slot !== undefined, 'slot 0 is held again');
  t.equal(JSON.parse(slot!.value).instanceId, ready!.id, 'by the instance that now fills the pool');
  t.notMatch(agent.output(), /"instanceId":"i-gone".*"msg":"adopted instance"/, 'the stray slot was never taken for an instance');
});
