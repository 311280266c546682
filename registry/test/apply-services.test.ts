// Registry.applyServices: a services file's changes in as few transactions as the store
// takes, each all-or-nothing (the CLI used to write one service at a time, so a failure in
// the middle left the file half-applied).
import t from 'tap';
import { MemoryKvStore } from '../src/memory-kv.js';
import { APPLY_BATCH_BYTES, APPLY_BATCH_SERVICES, Registry } from '../src/registry.js';
import { parseServiceSpec } from '../src/service-spec.js';
import type { KvCompare, KvOp, KvTxnResult } from '../src/kv.js';
import type { ServiceSpec } from '../src/types.js';

const spec = (name: string, env: Record<string, string> = {}): ServiceSpec => {
  const r = parseServiceSpec({ name, image: 'warmpool/chatbot-demo', env });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.spec;
};

class CountingStore extends MemoryKvStore {
  txns: number[] = [];
  failAt = -1;
  override async txn(compares: KvCompare[], ops: KvOp[], readOnFailure?: string[]): Promise<KvTxnResult> {
    this.txns.push(ops.length);
    if (this.txns.length - 1 === this.failAt) throw new Error('store refused the transaction');
    return super.txn(compares, ops, readOnFailure);
  }
}

t.test('a usual file is one transaction: puts and deletes together, all or nothing', async (t) => {
  const store = new CountingStore();
  const reg = new Registry(store, { prefix: '/a/' });
  t.teardown(() => reg.close());
  await reg.putService(spec('old'));
  store.txns = [];
  t.equal(await reg.applyServices([spec('a'), spec('b')], ['old']), 1);
  t.same(store.txns, [3]);
  t.same((await reg.listServices()).map((s) => s.name).sort(), ['a', 'b']);
  // A refused transaction changes nothing.
  store.failAt = store.txns.length;
  await t.rejects(reg.applyServices([spec('c'), spec('a', { X: '1' })], ['b']));
  t.same((await reg.listServices()).map((s) => s.name).sort(), ['a', 'b'], 'nothing of the refused file written');
  t.same((await reg.listServices()).find((s) => s.name === 'a')?.env, {});
});

t.test('large files go in batches: at most APPLY_BATCH_SERVICES changes and APPLY_BATCH_BYTES of records each', async (t) => {
  const store = new CountingStore();
  const reg = new Registry(store, { prefix: '/b/' });
  t.teardown(() => reg.close());
  const many = Array.from({ length: APPLY_BATCH_SERVICES * 2 + 3 }, (_, i) => spec(`s${i}`));
  t.equal(await reg.applyServices(many, []), 3);
  t.same(store.txns, [APPLY_BATCH_SERVICES, APPLY_BATCH_SERVICES, 3]);
  store.txns = [];
  // Records of ~200 KiB: five fit in 1 MiB, the sixth starts a new transaction.
  const big = Array.from({ length: 7 }, (_, i) => spec(`big${i}`, { BLOB: 'x'.repeat(200 * 1024) }));
  t.equal(await reg.applyServices(big, []), 2);
  t.same(store.txns, [Math.floor(APPLY_BATCH_BYTES / (200 * 1024 + 400)), 7 - Math.floor(APPLY_BATCH_BYTES / (200 * 1024 + 400))]);
  t.equal((await reg.listServices()).length, many.length + big.length);
  t.equal(await reg.applyServices([], []), 0, 'nothing to write, no transaction');
});
