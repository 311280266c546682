import t from 'tap';
import { MemoryKvStore } from '../src/memory-kv.js';
import { CACHED_KINDS, RegistryCache, type CacheChange } from '../src/cache.js';
import { Keys, type KeyKind } from '../src/keys.js';
import type { KvEvent, KvStore, KvWatchHandlers } from '../src/kv.js';
import { BRIDGEABLE_KINDS, planWatchRanges, prefixEnd } from '../src/watch-ranges.js';

const keys = new Keys('/c/');
const prefixOf = (k: KeyKind): string => (k === 'cluster' ? keys.cluster() : keys.kindPrefix(k));
const layout = [...CACHED_KINDS, 'idempotency' as const].map(prefixOf);
const bridge = BRIDGEABLE_KINDS.map(prefixOf);
const routerKinds = CACHED_KINDS.filter((k) => k !== 'slots');
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('the ranges a router and an agent watch', async (t) => {
  t.equal(prefixEnd('/c/sessions/'), '/c/sessions0');
  t.same(planWatchRanges(routerKinds.map(prefixOf), layout, bridge), [
    {
      prefixes: ['/c/claims/', '/c/cluster', '/c/demand/', '/c/drain/', '/c/hosts/', '/c/instances/', '/c/services/', '/c/sessions/'],
      start: '/c/claims/', end: '/c/sessions0',
    },
    { prefixes: ['/c/tombstones/'], start: '/c/tombstones/' },
  ], 'a router: claims to sessions (spanning idempotency keys), then tombstones (warm slots in between)');
  t.same(planWatchRanges(CACHED_KINDS.map(prefixOf), layout, bridge).map((r) => [r.start, r.end]), [['/c/claims/', '/c/tombstones0']],
    'an agent: one range');
  t.same(planWatchRanges([prefixOf('sessions')], layout, bridge), [{ prefixes: ['/c/sessions/'], start: '/c/sessions/' }], 'one prefix: a prefix watch');
  t.same(planWatchRanges(['/c/hosts/', '/c/services/'], layout, bridge).map((r) => r.prefixes), [['/c/hosts/'], ['/c/services/']],
    'an unfollowed prefix that is not bridgeable (instances) splits the range');
});

/** A memory store that counts the onEvents calls (watch messages) of its watches. */
function countingStore(): { store: KvStore; inner: MemoryKvStore; messages: KvEvent[][] } {
  const inner = new MemoryKvStore();
  const messages: KvEvent[][] = [];
  const count = (h: KvWatchHandlers): KvWatchHandlers => ({ ...h, onEvents: (events, rev) => { messages.push(events); h.onEvents(events, rev); } });
  const store = Object.assign(Object.create(inner) as KvStore, {
    watch: (p: string, after: string, h: KvWatchHandlers) => inner.watch(p, after, count(h)),
    watchRange: (s: string, e: string, after: string, h: KvWatchHandlers) => inner.watchRange(s, e, after, count(h)),
  });
  return { store, inner, messages };
}

t.test('a claim made elsewhere reaches a router as one watch message; slots and idempotency keys are dropped', async (t) => {
  const { store, inner, messages } = countingStore();
  const cache = new RegistryCache(store, keys, { kinds: routerKinds });
  await cache.start();
  t.teardown(() => cache.close());
  const changes: CacheChange[] = [];
  cache.on('change', (c: CacheChange) => changes.push(c));
  await inner.txn([], [
    { type: 'put', key: keys.claim('s', 'i1'), value: JSON.stringify({ sessionId: 'x', service: 's', instanceId: 'i1', claimedAt: 1 }) },
    { type: 'put', key: keys.session('x'), value: JSON.stringify({ id: 'x', service: 's', instanceId: 'i1' }) },
    { type: 'put', key: keys.idempotency('s', 'k'), value: '{"sessionId":"x"}' },
    { type: 'delete', key: keys.slot('s', 0) },
  ]);
  await tick();
  t.equal(messages.length, 1, 'one message');
  t.same(changes.map((c) => c.kind), ['claims', 'sessions'], 'only what a router follows');
  t.ok(cache.sessions.has('x') && cache.claims.has('i1'));
  await inner.txn([], [{ type: 'put', key: keys.slot('s', 1), value: '{}' }]);
  await tick();
  t.equal(messages.length, 1, 'a warm slot written alone sends the router nothing');
  t.equal(await cache.check(), false);
  t.equal(cache.counters.mismatches, 0, 'the per-prefix counts agree (idempotency keys and slots are not counted)');
});

t.test('Registry cache group: a prefix listed later than the shared watch starts does not replay what its list already holds', async (t) => {
  const inner = new MemoryKvStore();
  let claimsListed!: () => void;
  const claimsDone = new Promise<void>((r) => { claimsListed = r; });
  // The claims list is served first; a session comes and goes before the sessions list.
  const store = Object.assign(Object.create(inner) as KvStore, {
    list: async (prefix: string) => {
      if (prefix === keys.kindPrefix('sessions')) await claimsDone;
      const listed = await inner.list(prefix);
      if (prefix === keys.kindPrefix('claims')) {
        await inner.txn([], [{ type: 'put', key: keys.session('gone'), value: '{"id":"gone"}' }]);
        await inner.txn([], [{ type: 'delete', key: keys.session('gone') }]);
        claimsListed();
      }
      return listed;
    },
  });
  const cache = new RegistryCache(store, keys, { kinds: routerKinds });
  const seen: string[] = [];
  cache.on('change', (c: CacheChange) => seen.push(`${c.type} ${c.key}`));
  await cache.start();
  t.teardown(() => cache.close());
  await tick();
  t.same(seen, [], 'no put and delete of a session the sessions list never held');
  await inner.txn([], [{ type: 'put', key: keys.session('new'), value: '{"id":"new"}' }]);
  await tick();
  t.same(seen, [`put ${keys.session('new')}`], 'later events still arrive');
});
