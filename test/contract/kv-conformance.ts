/**
 * The KvStore contract (registry/src/kv.ts), run against every backend: memory, etcd, Consul.
 * `makeStore` returns a new client of the same backend on each call (several clients of one
 * store race each other in the concurrency test).
 *
 * Where backends legitimately differ it says so: Consul has no event history (a watch
 * reports differences between states, so quick successive writes may arrive merged) and
 * its leases are sessions with a 10 s TTL floor and lazy expiry.
 */
import type { Test } from 'tap';
import { WarmpoolError, type KvStore } from '@warmpool/registry';
import { eventually, testRunId } from '@warmpool/test';
import { runLeaseConformance } from './kv-conformance-leases.js';
import { runWatchConformance } from './kv-conformance-watch.js';
import { type KvStoreFixture, type MakeStore, del, put } from './kv-conformance-util.js';

export type { KvStoreFixture, MakeStore } from './kv-conformance-util.js';

export async function runKvConformance(t: Test, name: string, makeStore: MakeStore): Promise<void> {
  const fixtures: KvStoreFixture[] = [];
  const open = async (): Promise<KvStore> => {
    const f = await makeStore();
    fixtures.push(f);
    return f.store;
  };
  t.teardown(async () => {
    for (const f of fixtures.reverse()) await f.cleanup();
  });
  const store = await open();
  const root = `/warmpool-conformance/${testRunId()}/`;
  const ctx = { store, open, root };

  await t.test(`${name}: get, put and delete`, async (t) => {
    const k = `${root}basic/a`;
    t.equal(await store.get(k), undefined, 'a missing key reads as undefined');
    const w1 = await store.txn([], [put(k, '{"v":1}')]);
    t.ok(w1.succeeded, 'an unconditional put succeeds');
    t.match(w1.revision, /^\d+$/, 'revisions are decimal strings');
    const e1 = await store.get(k);
    t.same({ key: e1?.key, value: e1?.value }, { key: k, value: '{"v":1}' });
    t.equal(e1?.modRevision, w1.revision, "the entry's modRevision is the txn revision");
    t.equal(e1?.lease, undefined, 'no lease on a plain put');
    const w2 = await store.txn([], [put(k, '{"v":2}')]);
    t.ok(BigInt(w2.revision) > BigInt(w1.revision), 'revisions grow');
    t.equal((await store.get(k))?.value, '{"v":2}', 'a put overwrites');
    await store.txn([], [put(`${root}basic/empty`, '')]);
    t.equal((await store.get(`${root}basic/empty`))?.value, '', 'an empty value reads back as ""');
    const odd = `${root}basic/odd/idem key%2Fé?#&=+`;
    await store.txn([], [put(odd, 'odd')]);
    t.equal((await store.get(odd))?.value, 'odd', 'keys with spaces, %, ?, # and non-ASCII work');
    t.same((await store.list(`${root}basic/odd/`)).entries.map((e) => e.key), [odd], 'and list back unchanged');
    await store.txn([], [del(k)]);
    t.equal(await store.get(k), undefined, 'deleted');
    const again = await store.txn([], [del(k)]);
    t.ok(again.succeeded, 'deleting a missing key is not an error');
  });

  await t.test(`${name}: list returns exactly the prefix, with a revision`, async (t) => {
    const p = `${root}list/p/`;
    const w = await store.txn([], [put(`${p}a`, '1'), put(`${p}b`, '2'), put(`${p}sub/c`, '3'), put(`${root}list/p2/x`, 'no'), put(`${root}list/p`, 'no')]);
    const { revision, entries } = await store.list(p);
    t.same(entries.map((e) => [e.key, e.value]).sort(), [[`${p}a`, '1'], [`${p}b`, '2'], [`${p}sub/c`, '3']], 'only keys under the prefix');
    t.ok(BigInt(revision) >= BigInt(w.revision), 'the list revision covers the writes');
    for (const e of entries) t.ok(BigInt(e.modRevision) <= BigInt(revision), `${e.key} is not newer than the list`);
    t.same((await store.list(`${root}list/none/`)).entries, [], 'an empty prefix lists nothing');
  });

  await t.test(`${name}: txn is all-or-nothing`, async (t) => {
    const p = `${root}txn/`;
    const first = await store.txn([{ key: `${p}a`, op: 'absent' }], [put(`${p}a`, '1')]);
    t.ok(first.succeeded, 'absent holds for a new key');
    const rev = (await store.get(`${p}a`))!.modRevision;

    const f1 = await store.txn([{ key: `${p}a`, op: 'absent' }], [put(`${p}b`, 'x'), del(`${p}a`)], [`${p}a`, `${p}missing`]);
    t.notOk(f1.succeeded, 'absent fails for an existing key');
    t.equal(await store.get(`${p}b`), undefined, 'no op of a failed txn is applied (put)');
    t.equal((await store.get(`${p}a`))?.value, '1', 'no op of a failed txn is applied (delete)');
    t.equal(f1.reads?.length, 2, 'one read per readOnFailure key');
    t.same([f1.reads?.[0]?.key, f1.reads?.[0]?.value, f1.reads?.[0]?.modRevision], [`${p}a`, '1', rev], 'reads return the current entry');
    t.equal(f1.reads?.[1], undefined, 'a missing key reads as undefined');
    t.match(f1.revision, /^\d+$/, 'a failed txn still reports a revision');

    t.notOk((await store.txn([{ key: `${p}missing`, op: 'present' }], [put(`${p}c`, 'x')])).succeeded, 'present fails for a missing key');
    t.equal(await store.get(`${p}c`), undefined);
    t.ok((await store.txn([{ key: `${p}a`, op: 'present' }], [put(`${p}c`, 'x')])).succeeded, 'present holds for an existing key');

    const stale = String(BigInt(rev) - 1n);
    t.notOk((await store.txn([{ key: `${p}a`, op: 'modRevision', equals: stale }], [put(`${p}a`, 'stale')])).succeeded, 'modRevision fails on another revision');
    t.notOk((await store.txn([{ key: `${p}missing`, op: 'modRevision', equals: rev }], [put(`${p}d`, 'x')])).succeeded, 'modRevision fails on a missing key');
    const ok = await store.txn([{ key: `${p}a`, op: 'modRevision', equals: rev }, { key: `${p}d`, op: 'absent' }], [put(`${p}a`, '2'), put(`${p}d`, '4'), del(`${p}c`)]);
    t.ok(ok.succeeded, 'modRevision holds on the exact revision; several compares, several ops');
    t.same([(await store.get(`${p}a`))?.value, (await store.get(`${p}d`))?.value, await store.get(`${p}c`)], ['2', '4', undefined], 'all ops applied');
    t.equal((await store.get(`${p}d`))?.modRevision, ok.revision, 'all ops share the txn revision');

    const mixed = await store.txn([{ key: `${p}a`, op: 'present' }, { key: `${p}d`, op: 'absent' }], [put(`${p}e`, 'x')]);
    t.notOk(mixed.succeeded, 'one failing compare fails the txn');
    t.equal(await store.get(`${p}e`), undefined);
  });

  await t.test(`${name}: create-if-absent from 20 concurrent callers has exactly one winner`, async (t) => {
    const clients = [store, await open(), await open(), await open()];
    for (let round = 0; round < 3; round++) {
      const k = `${root}race/${round}`;
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => clients[i % clients.length]!.txn([{ key: k, op: 'absent' }], [put(k, `caller-${i}`)], [k])),
      );
      const winners = results.map((r, i) => (r.succeeded ? i : -1)).filter((i) => i >= 0);
      t.equal(winners.length, 1, `round ${round}: exactly one winner`);
      const value = `caller-${winners[0]}`;
      t.equal((await store.get(k))?.value, value, 'the stored value is the winner\'s');
      t.ok(results.every((r) => r.succeeded || r.reads?.[0]?.value === value), 'every loser reads the winner\'s value');
    }
  });

  await t.test(`${name}: a put replaces the key's lease; a revoked lease cannot be used`, async (t) => {
    const p = `${root}relet/`;
    const lease = await store.grantLease(60);
    await store.txn([], [put(`${p}a`, 'leased', lease), put(`${p}b`, 'leased', lease)]);
    t.equal((await store.get(`${p}a`))?.lease, lease, 'the entry names its lease');
    await store.txn([], [put(`${p}a`, 'plain')]);
    t.equal((await store.get(`${p}a`))?.lease, undefined, 'a put without a lease detaches the key');
    const other = await store.grantLease(60);
    await store.txn([], [put(`${p}c`, 'other', other)]);
    await store.txn([], [put(`${p}c`, 'moved', lease)]);
    t.equal((await store.get(`${p}c`))?.lease, lease, 'a put moves a key to another lease');
    await store.revokeLease(other);
    t.equal((await store.get(`${p}c`))?.value, 'moved', 'revoking the old lease leaves the moved key');
    await store.revokeLease(lease);
    await eventually(async () => (await store.get(`${p}b`)) === undefined && (await store.get(`${p}c`)) === undefined, { timeoutMs: 5000, what: 'leased keys gone' });
    t.equal((await store.get(`${p}a`))?.value, 'plain', 'the detached key survives the revoke');
    const err = await store.txn([], [put(`${p}d`, 'x', lease)]).then(() => undefined, (e: unknown) => e);
    t.ok(WarmpoolError.is(err), 'a put on a revoked lease fails with a WarmpoolError');
    t.equal((err as WarmpoolError | undefined)?.code, 'WARMPOOL_LEASE_LOST');
    t.equal(await store.get(`${p}d`), undefined, 'and writes nothing');
  });

  await runLeaseConformance(t, name, ctx);
  await runWatchConformance(t, name, ctx);

  await t.test(`${name}: a closed store refuses calls`, async (t) => {
    const s = await open();
    await s.close();
    await s.close();
    const err = await s.get(`${root}closed`).then(() => undefined, (e: unknown) => e);
    t.equal((err as WarmpoolError | undefined)?.code, 'WARMPOOL_REGISTRY_CLOSED', 'use after close throws WARMPOOL_REGISTRY_CLOSED');
  });
}
