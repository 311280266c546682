// Two (then three) agents as separate hosts share one warm pool through the registry only:
// warm=3 across both, claimed instances replaced at once, ended sessions destroyed, drain,
// and the slot invariant (never more unclaimed instances than warm) under racing agents.
import t from 'tap';
import { newSessionId } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

t.test('agents on two hosts keep warm=3 across both', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const overshoot = h.watchOvershoot();
  // Both agents are up before the service appears, so they race for its slots.
  const a = await h.startAgent('host-a');
  const b = await h.startAgent('host-b');
  await h.putService(chatSpec({ warm: 3 }));

  const ready = await h.waitReady(3, { hosts: 2 });
  t.equal(new Set(ready.map((i) => i.slot)).size, 3, 'each ready instance holds its own slot');
  t.ok(ready.every((i) => i.bootMs !== null && i.bootMs >= 900), 'boot time measured by the sidecar (BOOT_SECONDS=1)');
  t.equal((await h.containers()).length, 6, 'one app + one sidecar container per instance, nothing else');
  t.equal((await h.containers({ 'warmpool.role': 'sidecar' })).length, 3);

  await t.test('claimed instances are replaced; ended sessions destroy their instance', async (t) => {
    const before = new Set(h.readyUnclaimed().map((i) => i.id));
    const sessions: string[] = [];
    const claimedIds: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
      t.ok(r.ok, 'claim succeeds');
      if (r.ok) { sessions.push(r.session.id); claimedIds.push(r.instance.id); }
    }
    // Replacements start within moments of the claim (watch-driven), then boot (~1 s).
    await eventually(() => h.unclaimed().length === 3, { timeoutMs: 2000, what: 'replacements started' });
    const now = await h.waitReady(3);
    t.equal(now.filter((i) => !before.has(i.id)).length, 2, 'two new instances');
    await eventually(() => claimedIds.every((id) => h.cache.instances.get(id)?.value.state === 'claimed'), { what: 'records marked claimed' });
    t.ok(claimedIds.every((id) => h.cache.instances.get(id)?.value.slot === null), 'claimed instances hold no slot');

    // One session ended explicitly, one expires through its lease: both instances go.
    t.ok(await h.registry.endSession(sessions[0]!, 'ended'));
    const second = await eventually(() => h.cache.sessions.get(sessions[1]!)?.value, { what: 'session in the cache' });
    await h.registry.store.revokeLease(second!.lease);
    await eventually(async () => {
      if (claimedIds.some((id) => h.cache.instances.has(id))) throw new Error('records still there');
      const left = await h.containers();
      if (left.length !== 6) throw new Error(`${left.length} containers`);
      return true;
    }, { timeoutMs: 10_000, what: 'claimed instances destroyed' });
    const tomb = await eventually(() => h.cache.tombstones.get(sessions[1]!)?.value, { what: 'tombstone of the expired session' });
    t.equal(tomb?.reason, 'expired', 'the agent recorded the lease expiry');
    t.equal(h.cache.tombstones.get(sessions[0]!)?.value.reason, 'ended', 'an explicit end is left as it was');
    t.equal(h.readyUnclaimed().length, 3, 'the pool stays at warm=3');
  });

  await t.test('drain: no new instances on the drained host; its warm instances move; claimed ones finish', async (t) => {
    // Drain the host of a claimed instance that also holds warm ones, so both halves are
    // checked every run: its warm instances move, its claimed one keeps serving. Which host a
    // claim lands on is the registry's choice: claim again (bounded) until one qualifies.
    let r: Awaited<ReturnType<typeof h.registry.claim>> | undefined;
    for (let i = 0; i < 8 && !r; i++) {
      const c = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
      if (!c.ok) { t.fail(`claim ${i}: ${c.reason}`); return; }
      if (h.readyUnclaimed().some((x) => x.host === c.instance.host)) { r = c; break; }
      await h.registry.endSession(c.session.id, 'ended');
      await h.waitReady(3);
    }
    if (!r?.ok) { t.fail('no claim landed on a host that holds warm instances in 8 tries'); return; }
    const drained = r.instance.host;
    await h.registry.setDrain(drained, true);
    await eventually(() => {
      const ready = h.readyUnclaimed();
      if (ready.length !== 3 || ready.some((i) => i.host === drained)) throw new Error(h.describe());
      return true;
    }, { timeoutMs: 20_000, what: `warm pool moved off ${drained}` });
    t.pass(`the warm pool moved off ${drained}`);
    await eventually(() => h.cache.hosts.get(drained)?.value.draining === true, { what: 'host record draining' });
    t.equal(h.cache.instances.get(r.instance.id)?.value.state, 'claimed', 'the claimed instance on the drained host keeps serving');
    await h.registry.endSession(r.session.id, 'ended');
    await eventually(async () => (await h.containers({ 'warmpool.host': drained })).length === 0, { timeoutMs: 10_000, what: `${drained} empty` });
    t.equal(h.readyUnclaimed().length, 3, 'warm=3 held by the other host');
    await h.registry.setDrain(drained, false);
  });

  await t.test('three racing agents, warm raised and claims in bursts: never more unclaimed than warm', async (t) => {
    const c = await h.startAgent('host-c');
    await h.putService(chatSpec({ warm: 6 }));
    await h.waitReady(6, { hosts: 3, timeoutMs: 30_000 });
    for (let round = 0; round < 2; round++) {
      const rs = await Promise.all(Array.from({ length: 4 }, () => h.registry.claim({ service: 'chat', sessionId: newSessionId() })));
      t.equal(rs.filter((x) => x.ok).length, 4, `round ${round}: 4 claims (${rs.map((x) => (x.ok ? 'ok' : x.reason)).join(', ')})`);
      await h.waitReady(6, { timeoutMs: 30_000 });
    }
    const slots = [...h.cache.slots.values()].map((v) => v.value).filter((s) => s.service === 'chat');
    t.equal(slots.length, 6, 'six slot keys');
    t.same(new Set(slots.map((s) => s.instanceId)), new Set(h.readyUnclaimed().map((i) => i.id)), 'held exactly by the ready instances');
    overshoot.stop();
    t.ok(overshoot.max() <= 6, `most unclaimed instances ever seen: ${overshoot.max()} (warm 3, then 6)`);
    await h.stopAgent(c);
  });

  await h.stopAgent(a);
  await h.stopAgent(b);
});
