// The Docker engine under a running agent restarts (as `systemctl restart docker` or a
// crashed dockerd does): a real dockerd of the test's own is stopped and started again
// while the agent (its own process) runs on it. The instances the engine stopped leave the
// ready set, the agent reconnects by itself, removes their containers and boots a new warm
// pool; nothing is left behind and the agent never exits.
import t from 'tap';
import { eventually, infraSkip, startPrivateDockerd } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

t.test('the Docker engine restarts under a running agent', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const engine = await startPrivateDockerd({ images: ['warmpool/chatbot-demo', 'warmpool/sidecar'] });
  t.teardown(() => engine.close());
  const h = await AgentHarness.create(t);
  const onEngine = async (filter: string, all = true): Promise<string[]> =>
    (await engine.docker('ps', ...(all ? ['-a'] : []), '-q', '--filter', `label=warmpool.cluster=${h.cluster}`, ...(filter ? ['--filter', filter] : [])))
      .split('\n').filter(Boolean);

  const agent = h.spawnAgent('host-e', { extra: ['--docker-socket', engine.socketPath] });
  await h.putService(chatSpec({ warm: 2 }));
  const before = await h.waitReady(2, { timeoutMs: 60_000 });
  const oldIds = new Set(before.map((i) => i.id));
  t.equal((await onEngine('', false)).length, 4, 'two instances running on the private engine (app + sidecar each)');

  // The engine goes down, stopping every container it ran.
  await engine.stopEngine();
  await eventually(() => !h.readyUnclaimed().some((i) => oldIds.has(i.id)), { timeoutMs: 30_000, what: 'stopped instances out of the ready set' });
  t.pass('instances the engine stopped are no longer offered to routers');
  t.equal(agent.proc.exitCode, null, 'the agent keeps running while the engine is down');

  // It comes back: the agent reconnects without a restart of its own and rebuilds the pool.
  await engine.startEngine();
  const after = await h.waitReady(2, { timeoutMs: 90_000 });
  t.notOk(after.some((i) => oldIds.has(i.id)), `a new warm pool (${after.map((i) => i.id).join(', ')})`);
  for (const id of oldIds) {
    await eventually(async () => (await onEngine(`label=warmpool.instance=${id}`)).length === 0, { timeoutMs: 30_000, what: `containers of ${id} removed` });
  }
  t.pass('the stopped instances\' containers were removed, not left exited');
  await eventually(async () => {
    const all = await onEngine('');
    const running = await onEngine('', false);
    return all.length === 4 && running.length === 4;
  }, { timeoutMs: 30_000, what: 'exactly the new pool\'s containers on the engine' });
  t.pass('exactly the new pool\'s four containers on the engine, all running');
  // A failed record stays visible only until the service is ready again on the host.
  await eventually(() => !h.instances().some((i) => oldIds.has(i.id)), { timeoutMs: 15_000, what: 'old records gone' }).catch(() => undefined);
  t.notOk(h.instances().some((i) => oldIds.has(i.id)), `the old instances' records are gone from the registry (${h.describe()})`);
  t.equal(agent.proc.exitCode, null, 'the agent never exited');
  t.match(agent.output(), /docker event stream re-established/, 'the agent logged its reconnection');

  agent.proc.kill('SIGKILL');
  await agent.exited;
});
