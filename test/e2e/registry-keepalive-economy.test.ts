import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Registry, newSessionId, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { startEtcd, infraSkip, eventually } from '../src/index.js';

/** Counts the keep-alives each lease id receives through this store. */
class CountingStore extends EtcdKvStore {
  readonly counts = new Map<string, number>();
  override async keepAlive(ids: string[]): Promise<Map<string, number>> {
    for (const id of ids) this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    return super.keepAlive(ids);
  }
}

const IDLE_SEC = 6;
const TRAFFIC_MS = 9_000;

// Regression: routers sent one keep-alive per active session every flush (1 s) whatever the
// idle timeout, so 14,000 busy sessions kept etcd busy with keep-alives alone.
t.test('session keep-alives: a few per idle timeout from each router, none while idle, never expired under traffic', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const prefix = `/ka-${randomBytes(3).toString('hex')}/`;
  // Two routers serve the same session alternately, each flushing every 100 ms.
  const stores = [new CountingStore({ endpoints: etcd.endpoints }), new CountingStore({ endpoints: etcd.endpoints })];
  const routers = stores.map((s) => new Registry(s, { prefix, touchFlushMs: 100 }));
  t.teardown(async () => { for (const r of routers) await r.close(); for (const s of stores) await s.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'x', warm: 1, session: { idleTimeoutSec: IDLE_SEC, maxLifetimeSec: 600 } });
  if (!spec.ok) throw new Error('spec');
  await routers[0]!.putService(spec.spec);
  const hs = await routers[0]!.openHost({ id: 'h1', address: '127.0.0.1', capacity: { instances: 4, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 't' });
  t.teardown(() => hs.close({ revoke: true }));
  for (const id of ['i1', 'i2']) {
    await hs.putInstance({ id, service: 'chatbot', host: 'h1', state: 'ready', address: '127.0.0.1:1', containerId: id, slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });
  }
  const caches = await Promise.all(routers.map((r) => r.cache()));
  await eventually(() => caches[0]!.ready.count('chatbot') === 2, { timeoutMs: 10_000, what: 'instances ready in the cache' });
  const busy = await routers[0]!.claim({ service: 'chatbot', sessionId: newSessionId() });
  const idle = await routers[0]!.claim({ service: 'chatbot', sessionId: newSessionId() });
  if (!busy.ok || !idle.ok) return t.fail('claims');

  // Traffic on `busy` every 20 ms, alternating between the routers, for 1.5 idle timeouts.
  const start = Date.now();
  let n = 0;
  while (Date.now() - start < TRAFFIC_MS) {
    routers[n++ % 2]!.touch(busy.session);
    await new Promise((r) => setTimeout(r, 20));
  }
  const sent = stores.map((s) => s.counts.get(busy.session.lease) ?? 0);
  const total = sent[0]! + sent[1]!;
  // Per router: one on its first request, then at most one per third of the idle timeout.
  const bound = 2 * (Math.ceil((TRAFFIC_MS / 1000) / (IDLE_SEC / 3)) + 1);
  t.ok(total >= 2, `the busy session was kept alive (${sent.join(' + ')} keep-alives)`);
  t.ok(total <= bound, `${n} requests over ${TRAFFIC_MS} ms cost ${total} keep-alives (at most ${bound})`);
  t.equal((stores[0]!.counts.get(idle.session.lease) ?? 0) + (stores[1]!.counts.get(idle.session.lease) ?? 0), 0, 'an idle session costs none');
  t.ok(await stores[0]!.get(`${prefix}sessions/${busy.session.id}`), 'the busy session never expired under traffic');
  t.notOk(await stores[0]!.get(`${prefix}sessions/${idle.session.id}`), 'the idle session expired with its lease');

  // After the last request the session lives at least its idle timeout (minus a margin for
  // a loaded machine), then expires.
  const stopped = Date.now();
  await new Promise((r) => setTimeout(r, IDLE_SEC * 1000 - 1500));
  t.ok(await stores[0]!.get(`${prefix}sessions/${busy.session.id}`), 'still alive just before its idle timeout after the last request');
  await eventually(async () => !(await stores[0]!.get(`${prefix}sessions/${busy.session.id}`)), { timeoutMs: 15_000, what: 'busy session expired once idle' });
  t.ok(Date.now() - stopped >= IDLE_SEC * 1000 - 1500, 'it expired only after its idle timeout');
});
