import t from 'tap';
import { poolView, bootHistoryOf, arrivalsOf, fleetRoom } from '../src/pool-view.js';
import type { Versioned } from '../src/cache.js';
import type { ClaimRecord, DemandRecord, HostRecord, InstanceRecord, ServiceSpec, TombstoneRecord } from '../src/types.js';

const NOW = 1_700_000_000_000;
const v = <T>(value: T): Versioned<T> => ({ value, modRevision: '1' });
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'chat', image: 'img', containerPort: 8000, warm: 2, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 }, ...over,
});
const host = (id: string, instances: number, extra: Record<string, unknown> = {}): HostRecord => ({
  id, address: '127.0.0.1', capacity: { instances, memoryMb: 0, ...extra }, labels: {}, draining: false, startedAt: 0, agentVersion: 't',
});
const inst = (id: string, o: Partial<InstanceRecord> = {}): InstanceRecord => ({
  id, service: 'chat', host: 'h1', state: 'ready', address: '', containerId: '', slot: 0, createdAt: NOW - 10_000, readyAt: NOW - 5_000, bootMs: 5_000, ...o,
});

function cache(o: { instances?: InstanceRecord[]; claims?: ClaimRecord[]; tombstones?: TombstoneRecord[]; demand?: DemandRecord[]; hosts?: HostRecord[]; services?: ServiceSpec[] }) {
  return {
    services: new Map((o.services ?? [spec()]).map((s) => [s.name, v(s)])),
    hosts: new Map((o.hosts ?? [host('h1', 10)]).map((h) => [h.id, v(h)])),
    drains: new Set<string>(),
    instances: new Map((o.instances ?? []).map((i) => [i.id, v(i)])),
    claims: new Map((o.claims ?? []).map((c) => [c.instanceId, v(c)])),
    tombstones: new Map((o.tombstones ?? []).map((x) => [x.sessionId, v(x)])),
    demand: new Map((o.demand ?? []).map((d) => [`/p/demand/${d.service}/${d.router}`, v(d)])),
  };
}
const demand = (router: string, waiting: number): DemandRecord => ({ service: 'chat', router, waiting, oldestSince: NOW, at: NOW });

t.test('static pool: warm + every router\'s waiting sessions, the extra bounded by the fleet\'s room', async (t) => {
  const c = cache({ instances: [inst('a'), inst('b', { slot: 1 })], demand: [demand('r1', 3), demand('r2', 2)] });
  const p = poolView(c, spec(), NOW);
  t.match(p, { static: true, size: 2, waiting: 5, room: 8, slots: 7 });
  const tight = poolView(cache({ instances: [inst('a'), inst('b', { slot: 1 })], demand: [demand('r1', 30)], hosts: [host('h1', 5)] }), spec(), NOW);
  t.equal(tight.slots, 5, 'the extra stops at the room left (3 more)');
  const full = poolView(cache({ hosts: [host('h1', 0)] }), spec({ warm: 4 }), NOW);
  t.equal(full.slots, 4, 'the static part is never capped (today\'s behaviour)');
});

t.test('policy pool: capped by unclaimed + room; GPUs counted where hosts and specs have them', async (t) => {
  const pol = spec({ warm: { min: 6, max: 10, target: 0.9, windowSec: 60, cooldownSec: 0, windows: [] } });
  t.equal(poolView(cache({ hosts: [host('h1', 4)] }), pol, NOW).slots, 4, 'min 6 but room for 4');
  const gpuSpec = spec({ warm: { min: 6, max: 10, target: 0.9, windowSec: 60, cooldownSec: 0, windows: [] }, resources: { memoryMb: 0, cpus: 0, gpus: 2 } as ServiceSpec['resources'] });
  t.equal(fleetRoom(cache({ hosts: [host('h1', 10, { gpus: 4 })], services: [gpuSpec] }), gpuSpec), 2, '4 GPUs / 2 per instance');
  t.equal(fleetRoom(cache({ hosts: [host('h1', 10)], services: [gpuSpec] }), gpuSpec), 10, 'hosts without a GPU inventory: instances only');
});

t.test('history: arrivals from claims, ended claims and tombstones once each; boots outlive their instance', async (t) => {
  const claims: ClaimRecord[] = [
    { sessionId: 's1', service: 'chat', instanceId: 'i1', claimedAt: NOW - 3_000, bootMs: 7_000 },
    { sessionId: 's2', service: 'chat', instanceId: 'i2', claimedAt: NOW - 2_000, ended: true, endedAt: NOW - 1_000, bootMs: 9_000 },
    { sessionId: 's9', service: 'other', instanceId: 'i9', claimedAt: NOW - 2_000 },
  ];
  const tombstones: TombstoneRecord[] = [
    { sessionId: 's2', service: 'chat', instanceId: 'i2', reason: 'ended', endedAt: NOW - 1_000, claimedAt: NOW - 2_000, bootMs: 9_000 },
    { sessionId: 's3', service: 'chat', instanceId: 'i3', reason: 'expired', endedAt: NOW - 500, claimedAt: NOW - 60_000, bootMs: 11_000 },
  ];
  const c = cache({ claims, tombstones, instances: [inst('i4', { bootMs: 5_000, stages: { pullMs: 1_000, createMs: 0, bootMs: 3_000, warmupMs: 500 } } as Partial<InstanceRecord>)] });
  t.same(arrivalsOf(c, 'chat').sort((a, b) => a - b), [NOW - 60_000, NOW - 3_000, NOW - 2_000], 'three sessions, s2 counted once');
  t.same(bootHistoryOf(c, [...c.instances.values()].map((x) => x.value), 'chat'), [{ at: NOW - 60_000, ms: 11_000 }, { at: NOW - 3_000, ms: 7_000 }, { at: NOW - 2_000, ms: 9_000 }],
    'claimed instances\' boots kept, each dated when claimed; the unclaimed instance i4 is no sample while sessions have some');
  const quiet = cache({ instances: [...c.instances.values()].map((x) => x.value) });
  t.same(bootHistoryOf(quiet, [...quiet.instances.values()].map((x) => x.value), 'chat'), [{ at: NOW - 5_000, ms: 4_500 }], 'no session in the history: the current instances\' boots (timed stages summed)');
});

t.test('arrivals are request times: a claim less its wait, and the requests waiting now', async (t) => {
  const claims: ClaimRecord[] = [
    { sessionId: 's1', service: 'chat', instanceId: 'i1', claimedAt: NOW - 3_000, waitedMs: 4_000 },
    { sessionId: 's2', service: 'chat', instanceId: 'i2', claimedAt: NOW - 2_000, waitedMs: 0 },
  ];
  const tombstones: TombstoneRecord[] = [
    { sessionId: 's3', service: 'chat', instanceId: 'i3', reason: 'ended', endedAt: NOW - 500, claimedAt: NOW - 60_000, waitedMs: 5_000 },
  ];
  const waiting = { ...demand('r1', 3), oldestSince: NOW - 1_500, at: NOW - 200 };
  const c = cache({ claims, tombstones, demand: [waiting, { ...demand('r2', 0), oldestSince: NOW - 9_000 }] });
  t.same(arrivalsOf(c, 'chat').sort((a, b) => a - b), [NOW - 65_000, NOW - 7_000, NOW - 2_000, NOW - 1_500, NOW - 200, NOW - 200],
    'requests, not claims; r1\'s three waiters (the oldest at oldestSince), r2 has none');
  // The first request of an empty pool raises the size while it waits, not a boot later.
  const pol = spec({ warm: { min: 0, max: 10, target: 0.99, windowSec: 60, cooldownSec: 60, windows: [] } });
  const first = cache({ hosts: [host('h1', 10)], services: [pol], demand: [{ ...demand('r1', 1), oldestSince: NOW - 100, at: NOW - 100 }] });
  const v = poolView(first, pol, NOW);
  t.ok(v.size >= 1, `one waiting request sizes the pool (size ${v.size})`);
  t.equal(v.waiting, 1);
  const bogus = cache({ demand: [{ ...demand('r1', 1e9), oldestSince: NOW - 100, at: NOW - 50 }] });
  t.equal(arrivalsOf(bogus, 'chat').length, 1_000, 'a record written by hand counts at most 1,000 waiters');
});

t.test('a policy written into the registry by hand that apply would refuse never throws: no pool, waiters still count', async (t) => {
  for (const warm of [{ max: 'x' }, { min: 1, max: 2, target: 0.9, windows: 'nope' }, null, 'three']) {
    const bad = spec({ warm: warm as unknown as ServiceSpec['warm'] });
    const p = poolView(cache({ demand: [demand('r1', 2)], services: [bad] }), bad, NOW, { explain: true });
    t.match(p, { static: false, size: 0, waiting: 2, slots: 2 }, JSON.stringify(warm));
  }
});

t.test('a starting instance is no boot sample: its partial stages would pull the boot time down until it is ready (flap)', async (t) => {
  const ready = inst('a', { stages: { pullMs: 0, createMs: 500, bootMs: 20_000, warmupMs: null } });
  const starting = inst('b', { state: 'booting', readyAt: null, bootMs: null, createdAt: NOW - 1_000, stages: { pullMs: 0, createMs: 400 } });
  const history = bootHistoryOf(cache({}), [ready, starting], 'chat');
  t.same(history.map((h) => h.ms), [20_500], 'only the ready instance\'s whole start counts');
});

t.test('regression: retiring unclaimed instances never raises the size (CI flake: the size fell 6 -> 4 -> 3, then rose to 4 with no new session)', async (t) => {
  // Ten sessions over the last 12 s, their instances booted in 8 s; the pool's unclaimed
  // instances booted in 2 s. When the agents retire those (the size fell), their boot
  // samples must not leave the history: the median boot would rise and the size with it.
  const pol = spec({ warm: { min: 1, max: 20, target: 0.99, windowSec: 20, cooldownSec: 0, windows: [] } });
  const claims: ClaimRecord[] = Array.from({ length: 10 }, (_, i) => ({
    sessionId: `s${i}`, service: 'chat', instanceId: `c${i}`, claimedAt: NOW - 12_000 + i * 1_000, waitedMs: 0, ended: true, endedAt: NOW - 11_000 + i * 1_000, bootMs: 8_000, readyAt: NOW - 20_000,
  }));
  const pool = Array.from({ length: 12 }, (_, i) => inst(`p${i}`, { slot: i, bootMs: 2_000, readyAt: NOW - 6_000 + i * 100, createdAt: NOW - 8_000 + i * 100 }));
  const before = poolView(cache({ hosts: [host('h1', 40)], services: [pol], claims, instances: pool }), pol, NOW);
  for (let left = pool.length - 1; left >= 0; left--) {
    const after = poolView(cache({ hosts: [host('h1', 40)], services: [pol], claims, instances: pool.slice(0, left) }), pol, NOW);
    t.ok(after.size <= before.size, `${left} of the pool's instances left: size ${after.size} (was ${before.size})`);
  }
});
