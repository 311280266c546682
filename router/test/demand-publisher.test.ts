// The router's demand records: written on change, decremented inside the claim transaction,
// and equal to the queue again after overlapping claims (each wrote the count it saw).
import t, { type Test } from 'tap';
import { MemoryKvStore, Registry, type DemandRecord } from '@warmpool/registry';
import { DemandPublisher } from '../src/demand-publisher.js';

async function setup(t: Test) {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: '/unit/' });
  let waiting = 0;
  const pub = new DemandPublisher(registry, { waiting: () => waiting, services: () => (waiting ? ['chat'] : []) });
  t.teardown(async () => { await pub.close(); await registry.close(); await store.close(); });
  const key = registry.keys.demand('chat', pub.routerId);
  const stored = async (): Promise<number | undefined> => {
    const e = await store.get(key);
    return e ? (JSON.parse(e.value) as DemandRecord).waiting : undefined;
  };
  return { store, pub, stored, key, set: (n: number) => { waiting = n; pub.changed(); } };
}

t.test('published on change, deleted at zero, on a lease of its own', async (t) => {
  const { pub, stored, store, key, set } = await setup(t);
  set(3);
  await pub.flush();
  t.equal(await stored(), 3);
  t.ok((await store.get(key))?.lease, 'on the router\'s lease');
  set(0);
  await pub.flush();
  t.equal(await stored(), undefined);
});

t.test('regression: overlapping waiter claims leave the record equal to the queue, not a stale count', async (t) => {
  const { pub, stored, store, set } = await setup(t);
  set(3);
  await pub.flush();
  // Two waiters claim at once: each transaction carries "one less than the queue now" = 2.
  const a = pub.beginClaim('chat');
  const b = pub.beginClaim('chat');
  const opsA = pub.opsForClaim(a);
  const opsB = pub.opsForClaim(b);
  await store.txn([], opsA);
  await store.txn([], opsB);
  t.equal(await stored(), 2, 'the store holds the last transaction\'s count');
  set(1);
  pub.endClaim(a, 'committed');
  pub.endClaim(b, 'committed');
  await pub.flush();
  t.equal(await stored(), 1, 'rewritten to the queue length');
  // A lone claim needs no rewrite: its transaction wrote the truth.
  const c = pub.beginClaim('chat');
  await store.txn([], pub.opsForClaim(c));
  set(0);
  pub.endClaim(c, 'committed');
  await pub.flush();
  t.equal(await stored(), undefined, 'the last waiter\'s claim deleted the record');
});
