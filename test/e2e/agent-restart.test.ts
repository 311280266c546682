// An agent stopped (SIGTERM) or killed and started again adopts its containers: same
// instance ids, same container ids, no new containers, claimed sessions keep working.
import t from 'tap';
import { instanceKey, newSessionId, sessionCredential, CREDENTIAL_HEADER } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

t.test('a restarted agent adopts its containers', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const runDir = h.runDir();
  // A TTL well above a process restart on a loaded CI machine: the point is that a restart
  // within the TTL loses nothing, not how fast node starts.
  let agent = h.spawnAgent('host-a', { runDir, leaseTtlSec: 15 });
  await h.putService(chatSpec({ warm: 2 }));
  await h.waitReady(2);
  const claim = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
  t.ok(claim.ok);
  if (!claim.ok) return;
  await h.waitReady(2);
  await eventually(() => h.cache.instances.get(claim.instance.id)?.value.state === 'claimed', { what: 'claimed record' });
  const secret = await h.registry.clusterSecret();
  const credential = sessionCredential(instanceKey(secret, claim.instance.id), claim.session.id);
  const ask = async (): Promise<number> => (await fetch(`http://${claim.instance.address}/v1/models`, { headers: { [CREDENTIAL_HEADER]: credential } })).status;
  t.equal(await ask(), 200, 'the session reaches its instance');

  const snapshot = async (): Promise<{ ids: string[]; containers: string[] }> => ({
    ids: h.instances().filter((i) => i.state !== 'failed').map((i) => i.id).sort(),
    containers: (await h.containers()).sort(),
  });
  const before = await snapshot();
  t.equal(before.ids.length, 3);
  t.equal(before.containers.length, 6);

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    await t.test(`${how}, then start again`, async (t) => {
      const vanished = new Set<string>();
      const onChange = (c: { kind: string; type: string; parts: string[] }): void => { if (c.kind === 'instances' && c.type === 'delete') vanished.add(c.parts[1]!); };
      h.cache.on('change', onChange);
      agent.proc.kill(how);
      const exit = await agent.exited;
      t.same(exit, how === 'SIGTERM' ? { code: 0, signal: null } : { code: null, signal: 'SIGKILL' }, 'exit status');
      t.same((await snapshot()).containers, before.containers, 'containers keep running while the agent is away');
      agent = h.spawnAgent('host-a', { runDir, leaseTtlSec: 15 });
      await eventually(() => /agent started/.test(agent.output()), { timeoutMs: 15_000, what: 'agent up' });
      // Give it a few resync rounds: nothing may be created or removed.
      await eventually(() => (agent.output().match(/"msg":"adopted instance"/g) ?? []).length === 3, { timeoutMs: 10_000, what: 'three adoptions logged' });
      await h.waitReady(2);
      const after = await snapshot();
      t.same(after.ids, before.ids, 'same instance ids');
      t.same(after.containers, before.containers, 'same containers, none new');
      t.same([...vanished], [], 'no instance record ever disappeared (re-put before the old lease ran out)');
      t.equal(h.cache.instances.get(claim.instance.id)?.value.state, 'claimed', 'the claimed instance is still claimed');
      t.equal(await ask(), 200, 'and its session still reaches it');
      h.cache.off('change', onChange);
    });
  }

});
