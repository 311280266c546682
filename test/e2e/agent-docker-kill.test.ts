// docker kill on an instance's container takes it out of the ready set within 1 s (Docker
// events, not polling) and a replacement follows.
import t from 'tap';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

t.test('docker kill: out of the ready set within 1 s, then replaced', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a');
  await h.putService(chatSpec({ warm: 3 }));
  const ready = await h.waitReady(3);

  for (const role of ['app', 'sidecar'] as const) {
    await t.test(`kill the ${role} container`, async (t) => {
      const victim = h.readyUnclaimed()[0]!;
      const [cid] = await h.containers({ 'warmpool.instance': victim.id, 'warmpool.role': role });
      t.ok(cid, `found the ${role} container`);
      const killing = docker('kill', cid!);
      const t0 = Date.now();
      await eventually(() => !h.readyUnclaimed().some((i) => i.id === victim.id), { timeoutMs: 5000, intervalMs: 10, what: 'victim out of the ready set' });
      const outMs = Date.now() - t0;
      await killing;
      t.ok(outMs < 1000, `out of the ready set ${outMs} ms after docker kill was issued`);
      const now = await h.waitReady(3, { timeoutMs: 20_000 });
      t.notOk(now.some((i) => i.id === victim.id), 'replaced by a new instance');
      await eventually(async () => (await h.containers({ 'warmpool.instance': victim.id })).length === 0, { what: 'victim containers removed' });
    });
  }
  t.equal(ready.length, 3);
});
