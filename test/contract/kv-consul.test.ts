// The KvStore contract against a real, private Consul agent (dev mode), plus what is
// specific to Consul: the session TTL floor and watches that need a list() baseline.
import t from 'tap';
import { ConsulKvStore, CONSUL_MIN_TTL_SEC } from '@warmpool/registry/consul-kv';
import { eventually, infraSkip, startConsul } from '@warmpool/test';
import { runKvConformance } from './kv-conformance.js';
import { Recorder, put } from './kv-conformance-util.js';

t.test('ConsulKvStore', { skip: infraSkip('consul') }, async (t) => {
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  // Short blocking queries keep close() quick; production uses the 30 s default.
  const make = (): ConsulKvStore => new ConsulKvStore({ url: consul.url, watchWaitSec: 5 });

  await runKvConformance(t, 'consul', async () => {
    const store = make();
    return { store, cleanup: () => store.close() };
  });

  await t.test('consul: session TTLs are raised to the 10 s floor', async (t) => {
    const store = make();
    t.teardown(() => store.close());
    const lease = await store.grantKeptLease(1);
    t.teardown(() => lease.revoke());
    t.equal(lease.ttlSec, CONSUL_MIN_TTL_SEC, 'the handle reports the effective TTL');
    const id = await store.grantLease(2);
    t.equal((await store.keepAlive([id])).get(id), CONSUL_MIN_TTL_SEC, 'renewals report it too');
    await store.revokeLease(id);
  });

  await t.test('consul: a watch from a revision no list() returned resets once things changed', async (t) => {
    const store = make();
    t.teardown(() => store.close());
    const p = '/warmpool-consul/nobase/';
    const w = await store.txn([], [put(`${p}a`, '1')]);
    await store.txn([], [put(`${p}b`, '2')]);
    const rec = await Recorder.start(store, p, w.revision);
    t.teardown(() => rec.watch?.close());
    await eventually(() => rec.resets.length === 1, { timeoutMs: 5000, what: 'onReset' });
    t.match(rec.resets[0], /list\(\)/, `the reason says what to do: ${rec.resets[0]}`);
    // The cure the reset asks for: list, then watch from the list's revision.
    const listed = await store.list(p);
    const again = await Recorder.start(store, p, listed.revision);
    t.teardown(() => again.watch?.close());
    await store.txn([], [put(`${p}c`, '3')]);
    await eventually(() => again.events.length === 1, { timeoutMs: 10_000, what: 'event after re-list' });
    t.same(again.resets, []);
  });

  await t.test('consul: a fresh store watching from the current revision needs no baseline', async (t) => {
    const writer = make();
    const reader = make();
    t.teardown(async () => { await writer.close(); await reader.close(); });
    const p = '/warmpool-consul/current/';
    await writer.txn([], [put(`${p}a`, '1')]);
    const { revision } = await writer.list(p);
    const rec = await Recorder.start(reader, p, revision);
    t.teardown(() => rec.watch?.close());
    await writer.txn([], [put(`${p}b`, '2')]);
    await eventually(() => rec.events.length === 1, { timeoutMs: 10_000, what: 'event' });
    t.same(rec.summary(), [`put ${p}b=2`]);
    t.same(rec.resets, [], 'nothing changed between the revision and the watch: no reset');
  });
});
