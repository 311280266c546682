// ConsulWatch's handling of Consul index anomalies and errors, against a scripted fake
// of the HTTP layer (no Consul needed): a backwards index with unchanged data (tombstone
// reaping) is benign, with changed data it resets; failures report the connection state.
import t from 'tap';
import type { KvEntry } from '@warmpool/registry';
import { ConsulWatch, diffSnapshots } from '@warmpool/registry/consul-watch';
import type { ConsulHttp, ConsulItem } from '@warmpool/registry/consul-http';
import { eventually } from '@warmpool/test';
import { Recorder } from './kv-conformance-util.js';

type Answer = { index: bigint; items: ConsulItem[] } | Error;

/** Answers blocking reads from a script; once it runs out, reads hang until canceled. */
function fakeHttp(script: Answer[]): { http: ConsulHttp; reads: bigint[] } {
  const reads: bigint[] = [];
  const http = {
    read: async (_key: string, o: { index?: bigint; ctx?: { once(ev: string, fn: () => void): void } }) => {
      reads.push(o.index ?? 0n);
      const next = script.shift();
      if (next === undefined) {
        return new Promise((_, reject) => o.ctx?.once('cancel', () => reject(Object.assign(new Error('aborted'), { isAbort: true }))));
      }
      if (next instanceof Error) throw next;
      return next;
    },
  } as unknown as ConsulHttp;
  return { http, reads };
}

const item = (key: string, value: string, idx: number): ConsulItem => ({ Key: key, Value: value, ModifyIndex: idx, CreateIndex: idx });
const entry = (key: string, value: string, idx: number): KvEntry => ({ key: `/${key}`, value, modRevision: String(idx) });
const opts = {
  waitSec: 1,
  backoff: { initialMs: 1, maxMs: 5 },
  toConsulKey: (k: string) => k.slice(1),
  toEntry: (i: ConsulItem): KvEntry => ({ key: `/${i.Key}`, value: i.Value ?? '', modRevision: String(i.ModifyIndex) }),
};

function start(script: Answer[], snapshot: KvEntry[], index: bigint): { rec: Recorder; reads: bigint[]; watch: ConsulWatch } {
  const { http, reads } = fakeHttp(script);
  const rec = new Recorder();
  const watch = new ConsulWatch(http, '/p/', new Map(snapshot.map((e) => [e.key, e])), index, true, rec.handlers, opts, () => undefined).start();
  rec.watch = watch;
  return { rec, reads, watch };
}

t.test('diffSnapshots orders puts by ModifyIndex and puts deletes last', async (t) => {
  const before = new Map([['/p/a', entry('p/a', '1', 5)], ['/p/b', entry('p/b', '1', 6)]]);
  const after = new Map([['/p/b', entry('p/b', '2', 9)], ['/p/c', entry('p/c', '1', 8)]]);
  t.same(diffSnapshots(before, after, '10').map((e) => `${e.type} ${e.key} ${e.modRevision}`), ['put /p/c 8', 'put /p/b 9', 'delete /p/a 10']);
});

t.test('a backwards index with the same data is benign', async (t) => {
  const base = [entry('p/a', '1', 5)];
  const { rec, reads, watch } = start([
    { index: 7n, items: [item('p/a', '1', 5)] }, // tombstones reaped: index drops, data equal
    { index: 9n, items: [item('p/a', '2', 9)] },
  ], base, 10n);
  t.teardown(() => watch.close());
  await eventually(() => rec.events.length === 1, { timeoutMs: 2000, what: 'event after the drop' });
  t.same(rec.summary(), ['put /p/a=2']);
  t.same(rec.resets, []);
  t.same(reads.slice(0, 3), [10n, 7n, 9n], 'blocks on the index Consul returned, even when lower');
});

t.test('a backwards index with different data resets the watch', async (t) => {
  const { rec, watch } = start([{ index: 3n, items: [item('p/other', 'x', 2)] }], [entry('p/a', '1', 5)], 10n);
  t.teardown(() => watch.close());
  await eventually(() => rec.resets.length === 1, { timeoutMs: 2000, what: 'onReset' });
  t.match(rec.resets[0], /backwards/);
  t.same(rec.events, [], 'no events from a store whose revisions are no longer comparable');
});

t.test('errors report a disconnect, the next answer a reconnect', async (t) => {
  const { rec, watch } = start([new Error('ECONNREFUSED'), new Error('ECONNREFUSED'), { index: 12n, items: [item('p/a', '1', 5), item('p/b', 'new', 12)] }], [entry('p/a', '1', 5)], 10n);
  t.teardown(() => watch.close());
  await eventually(() => rec.events.length === 1, { timeoutMs: 2000, what: 'event after recovery' });
  t.same(rec.connection, [false, true], 'one disconnect, one reconnect');
  t.same(rec.summary(), ['put /p/b=new']);
  await watch.close();
  t.pass('close cancels the pending blocking read');
});
