// An agent told to stop (SIGTERM) while etcd does not answer: it still exits, cleanly and
// without touching its containers, and an agent started once etcd is back adopts them.
import t from 'tap';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

/** Resolves with the agent's exit, or with 'still running' after `ms` (a hung stop). */
function exitWithin<T>(exited: Promise<T>, ms: number): Promise<T | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([exited, new Promise<'still running'>((r) => { timer = setTimeout(() => r('still running'), ms); })])
    .finally(() => clearTimeout(timer));
}

t.test('SIGTERM while etcd is frozen: the agent exits, its containers stay and are adopted later', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const runDir = h.runDir();
  const agent = h.spawnAgent('host-a', { runDir, leaseTtlSec: 30 });
  await h.putService(chatSpec({ warm: 1 }));
  await h.waitReady(1);
  const ids = h.instances().map((i) => i.id);
  const containers = (await h.containers()).sort();
  t.equal(containers.length, 2, 'app and sidecar');

  // Frozen, not gone: calls hang instead of failing fast (a partitioned or stalled etcd).
  const etcd = h.etcd.members[0]!.proc!;
  etcd.kill('SIGSTOP');
  let frozen = true;
  const thaw = (): void => { if (frozen) { frozen = false; etcd.kill('SIGCONT'); } };
  t.teardown(thaw);
  // Let the agent notice: keep-alives and its watch go unanswered.
  await new Promise((r) => setTimeout(r, 2000));
  agent.proc.kill('SIGTERM');
  // A liveness bound, not a timing figure: the agent waits at most 15 s for work in flight.
  const exit = await exitWithin(agent.exited, 40_000);
  if (exit === 'still running') agent.proc.kill('SIGKILL');
  t.same(exit, { code: 0, signal: null }, 'a clean exit although etcd never answered');
  t.match(agent.output(), /SIGTERM, stopping/, 'it said why it stopped');
  t.same((await h.containers()).sort(), containers, 'its containers keep running');
  thaw();

  const next = h.spawnAgent('host-a', { runDir, leaseTtlSec: 30 });
  await eventually(() => /"msg":"adopted instance"/.test(next.output()), { timeoutMs: 30_000, what: 'the instance adopted' });
  await h.waitReady(1);
  t.same(h.instances().filter((i) => i.state !== 'failed').map((i) => i.id), ids, 'the same instance');
  t.same((await h.containers()).sort(), containers, 'the same containers, none new');
  next.proc.kill('SIGTERM');
  t.same(await next.exited, { code: 0, signal: null });
});
