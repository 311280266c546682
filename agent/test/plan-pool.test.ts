// The planner with pool sizes from pool-view.ts: demand (waiting sessions) adds slots,
// surplus is retired without destroying boots, holes are filled by holders above the count.
import t from 'tap';
import { plan, CLAIM_PENDING_MS } from '../src/plan.js';
import { spec, inst, input, starts, NOW } from './plan-fixtures.js';

const policy = { min: 0, max: 20, target: 0.99, windowSec: 300, cooldownSec: 300, windows: [] };

t.test('waiting sessions add slots: a static warm 3 with 5 waiting starts into slots 3..7', async (t) => {
  const full = { slots: { chat: { 0: 'x0', 1: 'x1', 2: 'x2' } } };
  const p = plan(input({ fleet: full, pools: { chat: { slots: 8, static: true, waiting: 5 } } }));
  const s = starts(p.actions);
  t.equal(s.length, 1, 'one start per service per round (the next follows as soon as the slot is taken)');
  t.ok(s[0]!.slot >= 3 && s[0]!.slot < 8, `slot ${s[0]!.slot}`);
  // Without a pool view: today's behaviour (3 slots, all held: nothing to do).
  t.same(starts(plan(input({ fleet: full })).actions), []);
});

t.test('static pool, nobody waiting: surplus retired at once, booting or not (as ever)', async (t) => {
  const fleet = { slots: { chat: { 0: 'a', 1: 'b', 2: 'c', 3: 'd' } } };
  const local = [inst('c', { slot: 2, phase: 'booting' }), inst('d', { slot: 3, phase: 'booting' })];
  const p = plan(input({ local, fleet, pools: { chat: { slots: 2, static: true, waiting: 0 } } }));
  t.match(p.actions, [{ type: 'destroy', instanceId: 'c', reason: 'warm count lowered' }, { type: 'destroy', instanceId: 'd', reason: 'warm count lowered' }]);
});

t.test('demand-driven pool: surplus boots finish; surplus ready ones retire; highest slots first', async (t) => {
  const fleet = { slots: { chat: { 0: 'a', 1: 'b', 5: 'c', 6: 'd' } } };
  const local = [inst('c', { slot: 5, phase: 'ready' }), inst('d', { slot: 6, phase: 'booting' })];
  const pool = { slots: 2, static: false, waiting: 0 };
  const p = plan(input({ local, fleet, services: [spec({ warm: policy })], pools: { chat: pool } }));
  t.match(p.actions, [{ type: 'destroy', instanceId: 'c', reason: 'pool shrunk' }]);
  t.equal(p.actions.length, 1, 'the booting one is never destroyed to shrink');
  // Static pool whose waiters left (waiting 0 now, but an extra is booting): same as ever.
  const q = plan(input({ local, fleet, pools: { chat: { slots: 2, static: true, waiting: 1 } } }));
  t.match(q.actions, [{ type: 'destroy', instanceId: 'c', reason: 'pool shrunk' }], 'with waiters around, a static pool keeps boots too');
});

t.test('a holder above the count that is not surplus keeps its slot, and no start fills the hole twice', async (t) => {
  // Count 3; slots 0 and 2 held, 1 free (a claim took it), slot 4 held from a larger pool.
  const fleet = { slots: { chat: { 0: 'a', 2: 'b', 4: 'c' } } };
  const local = [inst('c', { slot: 4 })];
  const p = plan(input({ local, fleet, pools: { chat: { slots: 3, static: true, waiting: 0 } } }));
  t.same(p.actions, [], 'three holders for three slots: nothing to retire, nothing to start');
  const fewer = plan(input({ fleet: { slots: { chat: { 0: 'a', 4: 'c' } } }, pools: { chat: { slots: 3, static: true, waiting: 0 } } }));
  t.equal(starts(fewer.actions).length, 1);
  t.ok([1, 2].includes(starts(fewer.actions)[0]!.slot), 'starts into a hole below the count');
});

t.test('every agent agrees on who retires: the same slot map gives the same surplus set', async (t) => {
  const fleet = { slots: { chat: { 0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e' } } };
  const pools = { chat: { slots: 3, static: false, waiting: 0 } };
  const retired = new Set<string>();
  for (const [host, id, slot] of [['h1', 'a', 0], ['h2', 'b', 1], ['h3', 'c', 2], ['h4', 'd', 3], ['h5', 'e', 4]] as const) {
    const p = plan(input({ hostId: host, local: [inst(id, { slot })], fleet, services: [spec({ warm: policy })], pools }));
    for (const a of p.actions) if (a.type === 'destroy') retired.add(a.instanceId);
  }
  t.same([...retired].sort(), ['d', 'e'], 'exactly the surplus, from the highest slots');
});

t.test('an instance found claimed in the store is left alone until the cache shows the claim, at most CLAIM_PENDING_MS', async (t) => {
  const fleet = { slots: { chat: { 0: 'a', 1: 'b' } } };
  const pools = { chat: { slots: 1, static: true, waiting: 0 } };
  const pending = (since: number) => plan(input({ local: [inst('b', { slot: 1, phase: 'ready', claimPendingSince: since })], fleet, pools }));
  const fresh = pending(NOW - 1_000);
  t.same(fresh.actions.filter((a) => 'instanceId' in a && a.instanceId === 'b'), [], 'not retired while its claim is on the way');
  t.equal(fresh.wakeAt, NOW - 1_000 + CLAIM_PENDING_MS, 'the planner looks again when the wait ends');
  t.match(pending(NOW - CLAIM_PENDING_MS).actions, [{ type: 'destroy', instanceId: 'b', reason: 'warm count lowered' }], 'after the wait, decided again (from the store)');
  const seen = plan(input({ local: [inst('b', { slot: 1, phase: 'ready', claimPendingSince: NOW - 1_000 })], fleet: { ...fleet, claims: { b: 's1' } }, pools }));
  t.match(seen.actions, [{ type: 'mark-claimed', instanceId: 'b', sessionId: 's1' }], 'the cache shows the claim: marked claimed');
});

t.test('a demand-driven pool whose size may fall with no registry change wakes the planner then', async (t) => {
  const fleet = { slots: { chat: { 0: 'a', 1: 'b' } } };
  const pool = { slots: 2, static: false, waiting: 0, recheckAt: NOW + 7_000 };
  const p = plan(input({ fleet, services: [spec({ warm: policy })], pools: { chat: pool } }));
  t.equal(p.wakeAt, NOW + 7_000, 'woken at the recheck');
  const none = plan(input({ fleet, services: [spec({ warm: policy })], pools: { chat: { ...pool, recheckAt: null } } }));
  t.equal(none.wakeAt, undefined, 'no recheck, no wake');
});
