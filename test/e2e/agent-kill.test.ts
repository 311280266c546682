// kill -9 an agent process: its instances leave the registry within the lease TTL, the
// other agent restores warm=3 alone, and the killed agent, restarted, removes the
// containers it left behind (their slots belong to the other host now): no orphans.
import t from 'tap';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

const TTL_SEC = 2;

t.test('kill -9 an agent: its instances leave within the TTL, the other agent restores warm=3', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const runDirA = h.runDir();
  const a = h.spawnAgent('host-a', { runDir: runDirA, leaseTtlSec: TTL_SEC });
  h.spawnAgent('host-b', { leaseTtlSec: TTL_SEC });
  await eventually(() => h.cache.hosts.has('host-a') && h.cache.hosts.has('host-b'), { timeoutMs: 15_000, what: 'both agents registered' });
  await h.putService(chatSpec({ warm: 3 }));
  await h.waitReady(3, { hosts: 2 });
  const onA = h.instances().filter((i) => i.host === 'host-a').map((i) => i.id);
  t.ok(onA.length >= 1, `host-a runs ${onA.length} instance(s)`);
  const containersA = await h.containers({ 'warmpool.host': 'host-a' });

  const killedAt = Date.now();
  a.proc.kill('SIGKILL');
  t.same(await a.exited, { code: null, signal: 'SIGKILL' });
  await eventually(() => onA.every((id) => !h.cache.instances.has(id)) && !h.cache.hosts.has('host-a'), { timeoutMs: TTL_SEC * 1000 + 5000, intervalMs: 20, what: 'host-a records gone' });
  const goneMs = Date.now() - killedAt;
  t.ok(goneMs <= TTL_SEC * 1000 + 1500, `host-a's instances left the registry ${goneMs} ms after kill -9 (lease TTL ${TTL_SEC} s)`);

  const ready = await h.waitReady(3, { timeoutMs: 20_000 });
  t.ok(ready.every((i) => i.host === 'host-b'), 'host-b alone holds the warm pool');
  t.same((await h.containers({ 'warmpool.host': 'host-a' })).sort(), containersA.sort(), 'the dead agent\'s containers are still there (nobody else touches them)');

  // Restarted on the same run dir, host-a finds containers whose slots host-b holds now.
  h.spawnAgent('host-a', { runDir: runDirA, leaseTtlSec: TTL_SEC });
  await eventually(async () => (await h.containers({ 'warmpool.host': 'host-a' })).filter((c) => containersA.includes(c)).length === 0,
    { timeoutMs: 15_000, what: 'host-a removed its orphaned containers' });
  await h.waitReady(3);
  t.equal(h.unclaimed().length, 3, 'still exactly warm=3 unclaimed instances');
});
