import t from 'tap';
import { plan } from '../src/plan.js';
import { input, inst, NOW, spec, starts, types, type Fleet } from './plan-fixtures.js';

t.test('empty host, free slots: starts one instance per service per round, into a free slot', async (t) => {
  const p = plan(input({ services: [spec(), spec({ name: 'other', warm: 1 })] }));
  t.same(starts(p.actions).map((a) => a.service), ['chat', 'other']);
  t.ok(starts(p.actions).every((a) => a.delayMs === 0), 'alone in the fleet: no spread delay');
  const some = plan(input({ fleet: { slots: { chat: { 0: 'x', 2: 'y' } } } }));
  t.same(starts(some.actions).map((a) => a.slot), [1], 'the only free slot');
});

t.test('no start when every slot is held, a start is in flight, backoff runs, or warm is 0', async (t) => {
  t.same(plan(input({ fleet: { slots: { chat: { 0: 'a', 1: 'b', 2: 'c' } } } })).actions, []);
  t.same(plan(input({ starting: ['chat'] })).actions, []);
  const b = plan(input({ backoff: { chat: NOW + 4000 } }));
  t.same(b.actions, []);
  t.equal(b.wakeAt, NOW + 4000, 'wakes when the backoff ends');
  t.same(starts(plan(input({ backoff: { chat: NOW - 1 } })).actions).length, 1, 'backoff over');
  t.same(plan(input({ services: [spec({ warm: 0 })] })).actions, []);
});

t.test('a slot held by one of our own instances the cache has not shown yet is not free', async (t) => {
  const p = plan(input({ local: [inst('a', { slot: 0, slotSeen: false, phase: 'creating' })], fleet: { slots: { chat: {} } } }));
  t.ok(starts(p.actions).every((a) => a.slot !== 0));
});

t.test('capacity: instances, memory and max per host are respected; draining hosts start nothing', async (t) => {
  const two = [inst('a', { slot: 0 }), inst('b', { slot: 1 })];
  const fleet = { slots: { chat: { 0: 'a', 1: 'b' } } };
  t.same(starts(plan(input({ local: two, fleet })).actions).length, 1);
  t.same(plan(input({ local: two, fleet, capacity: { instances: 2, memoryMb: 0 } })).actions, [], 'instance capacity');
  t.same(plan(input({ local: two, fleet, capacity: { instances: 10, memoryMb: 250 } })).actions, [], 'memory: 200 + 100 > 250');
  t.same(starts(plan(input({ local: two, fleet, capacity: { instances: 10, memoryMb: 300 } })).actions).length, 1, 'memory: exactly fits');
  t.same(plan(input({ local: two, fleet, services: [spec({ maxPerHost: 2 })] })).actions, [], 'max per host');
  t.same(plan(input({ local: two, fleet, draining: true })).actions.filter((a) => a.type === 'start'), [], 'draining');
  t.same(plan(input({ starting: ['other'], services: [spec(), spec({ name: 'other' })], capacity: { instances: 1, memoryMb: 0 } })).actions, [],
    'a start in flight counts against capacity');
});

t.test('spread: the delay grows with how many more instances we run than the emptiest accepting host', async (t) => {
  const mine = [inst('a', { slot: 0 }), inst('b', { slot: 1 })];
  const fleet = (hosts: Fleet['hosts']): Fleet => ({ slots: { chat: { 0: 'a', 1: 'b' } }, hosts });
  t.equal(starts(plan(input({ local: mine, fleet: fleet([{ id: 'h2', perService: { chat: 0 } }]) })).actions)[0]?.delayMs, 100);
  t.equal(starts(plan(input({ local: mine, fleet: fleet([{ id: 'h2', perService: { chat: 3 } }]) })).actions)[0]?.delayMs, 0, 'we are the emptiest');
  t.equal(starts(plan(input({ local: mine, fleet: fleet([{ id: 'h2', accepting: false }]) })).actions)[0]?.delayMs, 0, 'a full / draining host does not count');
  t.equal(starts(plan(input({ local: mine, services: [spec({ maxPerHost: 2, warm: 3 })], fleet: fleet([{ id: 'h2' }]) })).actions).length, 0);
});

t.test('racing agents pick different free slots', async (t) => {
  const picks = new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((h) => starts(plan(input({ hostId: h, services: [spec({ warm: 5 })] })).actions)[0]!.slot));
  t.ok(picks.size > 1, `different hosts start at different slots (${[...picks].join(',')})`);
});

t.test('a claim on one of our instances: mark it claimed (the claim consumed the slot)', async (t) => {
  const p = plan(input({ local: [inst('a', { slot: 0 })], fleet: { slots: { chat: {} }, claims: { a: 'sess-1' } } }));
  t.same(p.actions.filter((a) => a.type === 'mark-claimed'), [{ type: 'mark-claimed', instanceId: 'a', sessionId: 'sess-1' }]);
  t.notOk(p.actions.some((a) => a.type === 'destroy'), 'a claimed instance is not treated as having lost its slot');
});

t.test('claimed instance: destroyed when the claim goes, with a tombstone unless one exists', async (t) => {
  const claimed = inst('a', { phase: 'claimed', slot: null, sessionId: 's1' });
  t.same(plan(input({ local: [claimed], fleet: { claims: { a: 's1' }, slots: { chat: { 0: 'x', 1: 'y', 2: 'z' } } } })).actions, []);
  t.same(plan(input({ local: [claimed], fleet: { slots: { chat: { 0: 'x', 1: 'y', 2: 'z' } } } })).actions,
    [{ type: 'destroy', instanceId: 'a', reason: 'session ended', failure: false, tombstoneFor: 's1' }], 'lease expired: record the expiry');
  t.same(plan(input({ local: [claimed], fleet: { tombstones: ['s1'], slots: { chat: { 0: 'x', 1: 'y', 2: 'z' } } } })).actions,
    [{ type: 'destroy', instanceId: 'a', reason: 'session ended', failure: false }], 'ended by DELETE: tombstone exists');
});

t.test('max lifetime: the agent ends sessions past expiresAt, and wakes up for the next one', async (t) => {
  const full = { 0: 'x', 1: 'y', 2: 'z' };
  const a = inst('a', { phase: 'claimed', slot: null, sessionId: 's1' });
  const b = inst('b', { phase: 'claimed', slot: null, sessionId: 's2' });
  const p = plan(input({ local: [a, b], fleet: { slots: { chat: full }, claims: { a: 's1', b: 's2' }, sessionExpiry: { s1: NOW - 1, s2: NOW + 5000 } } }));
  t.same(p.actions, [{ type: 'end-session', instanceId: 'a', sessionId: 's1', reason: 'expired' }]);
  t.equal(p.wakeAt, NOW + 5000);
});

t.test('dead instances: unclaimed destroyed (failure counts), claimed ones end their session first', async (t) => {
  const full = { 0: 'a', 1: 'y', 2: 'z' };
  t.same(plan(input({ local: [inst('a', { dead: 'app container exited (code 1)', deadIsFailure: true })], fleet: { slots: { chat: full } } })).actions,
    [{ type: 'destroy', instanceId: 'a', reason: 'app container exited (code 1)', failure: true }]);
  const claimed = inst('a', { phase: 'claimed', slot: null, sessionId: 's1', dead: 'oom', deadIsFailure: true });
  t.same(plan(input({ local: [claimed], fleet: { slots: { chat: full }, claims: { a: 's1' } } })).actions,
    [{ type: 'end-session', instanceId: 'a', sessionId: 's1', reason: 'instance-gone' }]);
  t.same(plan(input({ local: [claimed], fleet: { slots: { chat: full }, tombstones: ['s1'] } })).actions,
    [{ type: 'destroy', instanceId: 'a', reason: 'oom', failure: true }]);
});

t.test('busy instances are left alone', async (t) => {
  t.same(plan(input({ local: [inst('a', { dead: 'x' })], busy: ['a'], fleet: { slots: { chat: { 0: 'a', 1: 'b', 2: 'c' } } } })).actions, []);
});

t.test('boot timeout: destroyed as a failure once past; otherwise a wake-up at the deadline', async (t) => {
  const full = { slots: { chat: { 0: 'a', 1: 'b', 2: 'c' } } };
  const booting = inst('a', { phase: 'booting', startedAt: NOW - 30_000, readyAt: null });
  const p = plan(input({ local: [booting], fleet: full }));
  t.same(p.actions, []);
  t.equal(p.wakeAt, NOW + 30_000);
  const late = plan(input({ local: [{ ...booting, startedAt: NOW - 60_000 }], fleet: full }));
  t.same(types(late.actions), ['destroy']);
  t.match(late.actions[0], { failure: true, reason: /boot timeout/ });
});

t.test('containers gone in a list taken after they started: destroyed; older lists and creating instances are ignored', async (t) => {
  const full = { slots: { chat: { 0: 'a', 1: 'b', 2: 'c' } } };
  const containers = (listedAt: number, app: boolean) => ({ listedAt, byInstance: new Map([['a', { app, sidecar: true }]]), strays: [] });
  t.match(plan(input({ local: [inst('a')], fleet: full, containers: containers(NOW, false) })).actions, [{ type: 'destroy', failure: true, reason: /app/ }]);
  t.same(plan(input({ local: [inst('a')], fleet: full, containers: containers(NOW - 20_000, false) })).actions, [], 'list older than the container');
  t.same(plan(input({ local: [inst('a')], fleet: full, containers: containers(NOW, true) })).actions, []);
  t.same(plan(input({ local: [inst('a', { phase: 'creating', startedAt: null, launchedAt: null })], fleet: full, containers: containers(NOW, false) })).actions, []);
  t.same(plan(input({ local: [inst('a', { phase: 'booting', startedAt: NOW - 100, launchedAt: null, readyAt: null })], fleet: full, containers: containers(NOW, false) })).actions, [],
    'app started, sidecar not yet: a list in between proves nothing');
});

t.test('retire: service removed, spec changed, warm lowered, slot lost', async (t) => {
  const full = { slots: { chat: { 0: 'a', 1: 'b', 2: 'c' } } };
  t.match(plan(input({ local: [inst('a')], services: [spec({ name: 'other', warm: 0 })], fleet: full })).actions, [{ type: 'destroy', reason: 'service removed', failure: false }]);
  t.match(plan(input({ local: [inst('a', { specHash: 'old' })], fleet: full })).actions, [{ type: 'destroy', reason: 'service spec changed' }]);
  t.match(plan(input({ local: [inst('c', { slot: 2 })], services: [spec({ warm: 2 })], fleet: full })).actions, [{ type: 'destroy', instanceId: 'c', reason: 'warm count lowered' }]);
  t.match(plan(input({ local: [inst('a')], fleet: { slots: { chat: { 0: 'other', 1: 'b', 2: 'c' } } } })).actions, [{ type: 'destroy', reason: 'warm slot lost' }]);
  t.same(plan(input({ local: [inst('a', { slotSeen: false })], fleet: { slots: { chat: { 1: 'b', 2: 'c' } } } })).actions.filter((a) => a.type === 'destroy'), [],
    'slot not seen yet (cache lagging behind our own take): nothing to judge');
});

t.test('drain: slots handed back; a ready instance stays until others have replaced it; booting ones go', async (t) => {
  const full = { 0: 'a', 1: 'b', 2: 'c' };
  t.same(plan(input({ draining: true, local: [inst('a')], fleet: { slots: { chat: full } } })).actions, [{ type: 'release-slot', instanceId: 'a' }]);
  const unslotted = inst('a', { slot: null, slotSeen: false });
  t.same(plan(input({ draining: true, local: [unslotted], fleet: { slots: { chat: { 1: 'b', 2: 'c' } }, readyUnclaimed: { chat: 3 } } })).actions, [],
    'only 2 ready elsewhere: keep ours');
  t.match(plan(input({ draining: true, local: [unslotted], fleet: { slots: { chat: full }, readyUnclaimed: { chat: 4 } } })).actions,
    [{ type: 'destroy', instanceId: 'a', reason: /draining/ }], '3 ready elsewhere: ours goes');
  t.match(plan(input({ draining: true, local: [inst('a', { slot: null, phase: 'booting' })], fleet: { slots: { chat: full } } })).actions,
    [{ type: 'destroy', reason: 'host draining' }]);
  t.match(plan(input({ local: [unslotted], fleet: { slots: { chat: full } } })).actions, [{ type: 'destroy', reason: 'holds no warm slot' }], 'not draining: no slot, no instance');
});

t.test('strays are removed after the grace period, with a wake-up until then', async (t) => {
  const containers = { listedAt: NOW, byInstance: new Map(), strays: [{ id: 'old', firstSeenAt: NOW - 40_000 }, { id: 'new', firstSeenAt: NOW - 1_000 }] };
  const p = plan(input({ services: [], containers }));
  t.same(p.actions, [{ type: 'remove-strays', containerIds: ['old'] }]);
  t.equal(p.wakeAt, NOW - 1_000 + 30_000);
});

t.test('regression (reclaim after agent death): an instance whose session ended before the agent saw the claim is destroyed', async (t) => {
  const full = { chat: { 0: 'x', 1: 'y', 2: 'z' } };
  const p = plan(input({ local: [inst('a', { slot: null })], fleet: { slots: full, endedClaims: ['a'] } }));
  t.same(p.actions.filter((a) => a.type === 'destroy').map((a) => (a as { instanceId: string }).instanceId), ['a']);
});
