import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Registry, newSessionId, parseServiceSpec, type KvEvent } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { startEtcd, infraSkip, eventually } from '../src/index.js';

const TOMBSTONES = 3_000;
const RETENTION_SEC = 16;

// Regression: every tombstone a router wrote in half a retention sat on one lease; when
// 80,000 expired together, the watch response (one revision) was 5 MB, over gRPC's 4 MiB
// default, routers re-listed and new sessions got 503 meanwhile.
t.test('mass tombstone expiry: no expiry deletes more than one lease\'s share, no re-list, claims go on', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const prefix = `/tomb-${randomBytes(3).toString('hex')}/`;
  const writerStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const routerStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const writer = new Registry(writerStore, { prefix, tombstoneRetentionSec: RETENTION_SEC });
  const router = new Registry(routerStore, { prefix });
  t.teardown(async () => { await router.close(); await writer.close(); await routerStore.close(); await writerStore.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 1 });
  if (!spec.ok) throw new Error('spec');
  await writer.putService(spec.spec);
  const hs = await writer.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 40, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' }, 30);
  t.teardown(() => hs.close({ revoke: true }));
  for (let i = 0; i < 20; i++) {
    await hs.putInstance({ id: `i${i}`, service: 'chatbot', host: 'h1', state: 'ready', address: '127.0.0.1:1', containerId: `c${i}`, slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });
  }
  const cache = await router.cache();
  await eventually(() => cache.ready.count('chatbot') === 20, { timeoutMs: 10_000, what: 'instances in the router cache' });

  // Deletes under tombstones/, grouped by revision: one group is one lease expiry.
  const perRevision = new Map<string, number>();
  const { revision } = await routerStore.list(`${prefix}tombstones/`);
  const watch = await routerStore.watch(`${prefix}tombstones/`, revision, {
    onEvents: (events: KvEvent[]) => {
      for (const e of events) if (e.type === 'delete') perRevision.set(e.modRevision, (perRevision.get(e.modRevision) ?? 0) + 1);
    },
    onReset: () => undefined,
  });
  t.teardown(() => watch.close());

  const started = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < TOMBSTONES) {
      next++;
      await writer.recordExpired({ sessionId: newSessionId(), service: 'chatbot', instanceId: 'gone', reason: 'expired', endedAt: Date.now() });
    }
  }));
  t.comment(`${TOMBSTONES} tombstones written in ${Date.now() - started} ms`);
  await eventually(() => cache.tombstones.size >= TOMBSTONES, { timeoutMs: 20_000, what: 'tombstones in the router cache' });
  const listsBefore = cache.counters.lists;

  // While they expire, new sessions are claimed through the router.
  const claims: string[] = [];
  const claiming = (async () => {
    for (let i = 0; i < 20 && Date.now() - started < (RETENTION_SEC + 20) * 1000; i++) {
      const r = await router.claim({ service: 'chatbot', sessionId: newSessionId() });
      claims.push(r.ok ? 'ok' : r.reason);
      await new Promise((r) => setTimeout(r, 600));
    }
  })();
  await eventually(() => [...perRevision.values()].reduce((a, b) => a + b, 0) >= TOMBSTONES, { timeoutMs: (RETENTION_SEC + 30) * 1000, what: 'every tombstone expired' });
  await claiming;
  const largest = Math.max(...perRevision.values());
  t.ok(largest <= 500, `${TOMBSTONES} tombstones expired in ${perRevision.size} expiries, the largest deleting ${largest} keys (at most 500)`);
  t.same(claims.filter((c) => c !== 'ok'), [], `${claims.length} claims during the expiry all succeeded`);
  t.equal(cache.counters.lists, listsBefore, 'the router never re-listed');
  await eventually(() => cache.tombstones.size === 0, { timeoutMs: 10_000, what: 'router cache followed the expiry' });
});
