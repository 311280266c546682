/** KvStore conformance: watches (part of runKvConformance). */
import type { Test } from 'tap';
import type { KvStore } from '@warmpool/registry';
import { eventually } from '@warmpool/test';
import { Recorder, applyEvents, asMap, del, exactHistory, nonDecreasing, put, show, sortedPairs } from './kv-conformance-util.js';

interface Ctx { store: KvStore; root: string }

export async function runWatchConformance(t: Test, name: string, { store, root }: Ctx): Promise<void> {
  const exact = exactHistory(store.backend);

  await t.test(`${name}: watch delivers events after a revision, in order, with type and value`, async (t) => {
    const p = `${root}watch-seq/`;
    await store.txn([], [put(`${p}old`, 'before the watch'), put(`${root}watch-seq-sibling`, 'outside')]);
    const { revision } = await store.list(p);
    const rec = await Recorder.start(store, p, revision);
    t.teardown(() => rec.watch?.close());
    // Each write waits until it was seen, so every backend reports every step.
    const steps: [ReturnType<typeof put> | ReturnType<typeof del>, string][] = [
      [put(`${p}a`, '1'), `put ${p}a=1`],
      [put(`${p}b`, '2'), `put ${p}b=2`],
      [put(`${p}a`, '3'), `put ${p}a=3`],
      [del(`${p}a`), `delete ${p}a`],
      [put(`${p}c`, '{"json":true}'), `put ${p}c={"json":true}`],
      [del(`${p}old`), `delete ${p}old`],
    ];
    const revisions: string[] = [];
    for (const [op, expected] of steps) {
      const w = await store.txn([], [op]);
      revisions.push(w.revision);
      await store.txn([], [put(`${root}watch-seq-sibling`, 'noise')]);
      await eventually(() => rec.events.length >= revisions.length, { timeoutMs: 10_000, what: expected });
    }
    t.same(rec.summary(), steps.map(([, s]) => s), 'every step, in order, nothing from outside the prefix');
    t.same(rec.events.filter((e) => e.type === 'put').map((e) => e.modRevision), revisions.filter((_, i) => steps[i]![0].type === 'put'), 'puts carry the revision of their write');
    t.ok(rec.events.every((e, i) => BigInt(e.modRevision) >= BigInt(revisions[i]!)), 'deletes carry a revision at or after their write');
    t.ok(nonDecreasing(rec.events.map((e) => e.modRevision)), 'revisions never go down');
    t.ok(rec.batches.every((b) => b.events.every((e) => BigInt(e.modRevision) <= BigInt(b.revision))), 'a batch revision covers its events');
    t.same(rec.resets, [], 'no reset');
  });

  // Range watches are optional (the Consul store has none: its cache watches per prefix),
  // so only stores that offer them get this test; none is skipped.
  if (store.watchRange) await t.test(`${name}: a range watch delivers the keys in [start, end), one batch per transaction`, async (t) => {
    const p = `${root}watch-range/`;
    const { revision } = await store.list(p);
    const rec = new Recorder();
    rec.watch = await store.watchRange!(`${p}b/`, `${p}d0`, revision, rec.handlers);
    t.teardown(() => rec.watch?.close());
    // b/ and d/ are in the range, c/ lies between them; a/ and e/ are outside it.
    await store.txn([], [put(`${p}a/1`, 'out'), put(`${p}b/1`, 'b'), put(`${p}c/1`, 'c'), put(`${p}d/1`, 'd'), put(`${p}e/1`, 'out')]);
    await store.txn([], [del(`${p}b/1`), put(`${p}e/2`, 'out')]);
    await eventually(() => rec.events.length >= 4, { timeoutMs: 10_000, what: 'range events' });
    t.same(rec.summary(), [`put ${p}b/1=b`, `put ${p}c/1=c`, `put ${p}d/1=d`, `delete ${p}b/1`], 'in range, in order');
    t.same(rec.batches.map((b) => b.events.length), [3, 1], 'the events of one transaction arrive together');
    const late = new Recorder();
    late.watch = await store.watchRange!(`${p}b/`, `${p}d0`, revision, late.handlers);
    t.teardown(() => late.watch?.close());
    await eventually(() => late.events.length >= 4, { timeoutMs: 10_000, what: 'replay' });
    t.same(late.summary(), rec.summary(), 'a range watch from an old revision replays the same');
  });

  await t.test(`${name}: a burst of writes converges, in revision order`, async (t) => {
    const p = `${root}watch-burst/`;
    const listed = await store.list(p);
    const rec = await Recorder.start(store, p, listed.revision);
    t.teardown(() => rec.watch?.close());
    const ops = [];
    for (let i = 0; i < 30; i++) ops.push(i % 7 === 6 ? del(`${p}k${i % 5}`) : put(`${p}k${i % 5}`, `v${i}`));
    await Promise.all(ops.map((op) => store.txn([], [op])));
    await store.txn([], [put(`${p}k9`, 'last'), del(`${p}k0`)]);
    const final = asMap((await store.list(p)).entries);
    await eventually(() => sortedPairs(applyEvents(asMap(listed.entries), rec.events)).join() === sortedPairs(final).join(), { timeoutMs: 10_000, what: 'watch converges' });
    t.pass('applying the events to the listed state gives the current state');
    t.ok(nonDecreasing(rec.events.map((e) => e.modRevision)), 'revisions never go down');
    if (exact) {
      const puts = ops.filter((o) => o.type === 'put').length + 1;
      t.equal(rec.events.filter((e) => e.type === 'put').length, puts, 'with an event history every put arrives');
    }
    t.same(rec.resets, [], 'no reset');
  });

  await t.test(`${name}: a watch started at an old revision replays what it missed`, async (t) => {
    const p = `${root}watch-replay/`;
    await store.txn([], [put(`${p}gone`, 'x'), put(`${p}kept`, 'k')]);
    const listed = await store.list(p);
    await store.txn([], [del(`${p}gone`)]);
    await store.txn([], [put(`${p}new`, '1')]);
    await store.txn([], [put(`${p}new`, '2')]);
    await store.txn([], [put(`${p}brief`, 'x')]);
    await store.txn([], [del(`${p}brief`)]);
    const rec = await Recorder.start(store, p, listed.revision);
    t.teardown(() => rec.watch?.close());
    await eventually(() => rec.events.some((e) => e.key === `${p}new` && e.value === '2'), { timeoutMs: 10_000, what: 'replayed events' });
    const summary = rec.summary();
    t.ok(summary.includes(`delete ${p}gone`), 'the missed delete is replayed');
    t.equal(summary.filter((s) => s.startsWith(`put ${p}new=`)).pop(), `put ${p}new=2`, 'the missed puts are replayed, last value last');
    t.notOk(summary.some((s) => s.includes(`${p}kept`)), 'unchanged keys are not replayed');
    t.same(sortedPairs(applyEvents(asMap(listed.entries), rec.events)), [[`${p}kept`, 'k'], [`${p}new`, '2']], 'replay leads to the current state');
    if (exact) t.same(summary, [`delete ${p}gone`, `put ${p}new=1`, `put ${p}new=2`, `put ${p}brief=x`, `delete ${p}brief`], 'with an event history every step is replayed');
    t.ok(nonDecreasing(rec.events.map((e) => e.modRevision)), 'in revision order');
    await store.txn([], [put(`${p}after`, 'live')]);
    await eventually(() => rec.events.some((e) => e.key === `${p}after`), { timeoutMs: 10_000, what: 'live event after the replay' });
    t.pass('then live events follow');
    t.same(rec.resets, [], 'no reset');
  });

  await t.test(`${name}: close stops events`, async (t) => {
    const p = `${root}watch-close/`;
    const { revision } = await store.list(p);
    const closed = await Recorder.start(store, p, revision);
    const open = await Recorder.start(store, p, revision);
    t.teardown(() => open.watch?.close());
    await closed.watch!.close();
    await closed.watch!.close();
    t.pass('close is idempotent');
    await store.txn([], [put(`${p}z`, 'after close')]);
    // The second watch proves the event was delivered to watchers in the meantime.
    await eventually(() => open.events.length > 0, { timeoutMs: 10_000, what: 'event on the open watch' });
    t.same(open.summary(), [`put ${p}z=after close`]);
    t.same(closed.events.map(show), [], 'the closed watch got nothing');
  });
}
