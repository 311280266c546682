import t from 'tap';
import { MemoryKvStore } from '../src/memory-kv.js';
import { RegistryCache } from '../src/cache.js';
import { Keys } from '../src/keys.js';
import { ReadyIndex } from '../src/ready-index.js';

const keys = new Keys('/c/');
const put = (s: MemoryKvStore, key: string, v: unknown) => s.txn([], [{ type: 'put', key, value: JSON.stringify(v) }]);
const inst = (id: string, host: string, state = 'ready') => ({ id, service: 's', host, state, address: 'a', containerId: '', slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });

t.test('cache follows puts and deletes and keeps the ready index', async (t) => {
  const store = new MemoryKvStore();
  await put(store, keys.instance('s', 'a'), inst('a', 'h1'));
  const cache = new RegistryCache(store, keys);
  await cache.start();
  t.teardown(() => cache.close());
  t.equal(cache.ready.count('s'), 1, 'listed');
  const readyEvents: string[] = [];
  cache.on('ready', (s: string) => readyEvents.push(s));
  await put(store, keys.instance('s', 'b'), inst('b', 'h2', 'booting'));
  await put(store, keys.instance('s', 'b'), inst('b', 'h2', 'ready'));
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('s'), 2);
  t.same(readyEvents, ['s']);
  await put(store, keys.claim('s', 'a'), { sessionId: 'x', service: 's', instanceId: 'a', claimedAt: 0 });
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('s'), 1, 'claimed instance leaves the ready set');
  await store.txn([], [{ type: 'delete', key: keys.instance('s', 'b') }]);
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('s'), 0, 'deleted instance leaves the ready set');
  await put(store, '/c/instances/s/bad', 'not json{');
  await store.txn([], [{ type: 'put', key: '/c/instances/s/bad2', value: 'not json{' }]);
  await new Promise((r) => setImmediate(r));
  t.notOk(cache.instances.has('bad2'), 'a corrupt record is ignored, not fatal');
});

t.test('resync after missed events converges to the store', async (t) => {
  const store = new MemoryKvStore();
  const cache = new RegistryCache(store, keys);
  await cache.start();
  t.teardown(() => cache.close());
  await put(store, keys.host('h1'), { id: 'h1' });
  await new Promise((r) => setImmediate(r));
  // Simulate a watch that missed everything: change the store behind the cache's back.
  (cache as unknown as { onEvents: () => void }).onEvents = () => {};
  await put(store, keys.host('h2'), { id: 'h2' });
  await store.txn([], [{ type: 'delete', key: keys.host('h1') }]);
  await new Promise((r) => setImmediate(r));
  t.ok(cache.hosts.has('h1'), 'stale before resync');
  await cache.resync();
  t.same([...cache.hosts.keys()], ['h2'], 'converged after resync');
});

t.test('ready index picks from the host with most ready and honours exclusions', async (t) => {
  const idx = new ReadyIndex();
  idx.add('s', 'h1', 'a');
  idx.add('s', 'h2', 'b');
  idx.add('s', 'h2', 'c');
  t.equal(idx.add('s', 'h2', 'c'), false, 'no duplicates');
  t.match(idx.pick('s', undefined, () => 0), /^[bc]$/);
  t.equal(idx.pick('s', new Set(['b', 'c']), () => 0), 'a');
  idx.remove('s', 'b');
  idx.remove('s', 'c');
  t.equal(idx.pick('s', undefined, () => 0.99), 'a');
  idx.remove('s', 'a');
  t.equal(idx.pick('s', undefined, () => 0), undefined);
  t.equal(idx.count('s'), 0);
});

t.test('closing a registry whose cache cannot list yet (store unreachable) returns at once', async (t) => {
  const { Registry } = await import('../src/registry.js');
  const store = new MemoryKvStore();
  let lists = 0;
  store.list = async () => { lists++; throw new Error('unreachable'); };
  const registry = new Registry(store, { prefix: '/close-test/' });
  const pending = registry.cache();
  pending.catch(() => undefined);
  // Let it fail a few lists and back off.
  while (lists < 3) await new Promise((r) => setTimeout(r, 20));
  const started = Date.now();
  const closed = await Promise.race([registry.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('hung'), 3000))]);
  t.equal(closed, 'closed', `close() returned (after ${Date.now() - started} ms)`);
  const before = lists;
  await new Promise((r) => setTimeout(r, 500));
  t.equal(lists, before, 'and the cache stopped retrying');
  await store.close();
});
