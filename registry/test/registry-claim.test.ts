import t from 'tap';
import { MemoryKvStore } from '../src/memory-kv.js';
import type { KvWatch, KvWatchHandlers } from '../src/kv.js';
import { Registry } from '../src/registry.js';
import type { HostRecord, InstanceRecord, ServiceSpec } from '../src/types.js';
import { parseServiceSpec } from '../src/service-spec.js';
import { newSessionId } from '../src/credentials.js';

const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => {
  const r = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3, session: { idleTimeoutSec: 30, maxLifetimeSec: 60 }, ...over });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.spec;
};
const host = (id: string): HostRecord => ({ id, address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 'test' });
const inst = (id: string, h: string, slot: number | null, state: InstanceRecord['state'] = 'ready'): InstanceRecord => ({
  id, service: 'chatbot', host: h, state, address: `127.0.0.1:${1000 + Number(id.replace(/\D/g, '') || 0)}`, containerId: `c-${id}`, slot, createdAt: 0, readyAt: 1, bootMs: 1,
});

/** A store whose watchers can be held back: the cache then shows an older state than the store. */
class LaggingStore extends MemoryKvStore {
  private held: (() => void)[] | undefined;
  hold(): void { this.held ??= []; }
  release(): void {
    const q = this.held ?? [];
    this.held = undefined;
    for (const f of q) f();
  }
  override watch(prefix: string, afterRevision: string, h: KvWatchHandlers): Promise<KvWatch> {
    return super.watch(prefix, afterRevision, {
      ...h,
      onEvents: (events, rev) => { if (this.held) this.held.push(() => h.onEvents(events, rev)); else h.onEvents(events, rev); },
    });
  }
}

async function setup<S extends MemoryKvStore = MemoryKvStore>(t: { teardown: (fn: () => Promise<void>) => void }, mk?: () => S) {
  const store = (mk ? mk() : new MemoryKvStore()) as S;
  const reg = new Registry(store, { prefix: '/wp-test/', leaseRecoveryJitterMs: 0 });
  t.teardown(async () => { await reg.close(); await store.close(); });
  await reg.putService(spec());
  const cache = await reg.cache();
  return { store, reg, cache };
}

t.test('claim hands one ready instance, deletes its slot, and is idempotent per session id', async (t) => {
  const { reg, cache, store } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  await hs.takeSlot('chatbot', 0, 'i1');
  await hs.putInstance(inst('i1', 'h1', 0));
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('chatbot'), 1);
  const sid = newSessionId();
  const r1 = await reg.claim({ service: 'chatbot', sessionId: sid });
  t.ok(r1.ok && r1.created, 'claimed');
  if (!r1.ok) return;
  t.equal(r1.instance.id, 'i1');
  t.notOk(await store.get('/wp-test/slots/chatbot/0'), 'slot freed by the claim');
  t.ok(await store.get('/wp-test/claims/chatbot/i1'), 'claim marker');
  const r2 = await reg.claim({ service: 'chatbot', sessionId: sid });
  t.ok(r2.ok && !r2.created && r2.instance.id === 'i1', 'same session id gets the same instance');
  const r3 = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
  t.same(r3, { ok: false, reason: 'no-ready-instance' }, 'nothing else ready');
  await hs.close({ revoke: true });
});

t.test('unknown service and instances that are not ready are never claimed', async (t) => {
  const { reg } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  await hs.putInstance(inst('b1', 'h1', null, 'booting'));
  await hs.putInstance(inst('f1', 'h1', null, 'failed'));
  t.same(await reg.claim({ service: 'nope', sessionId: newSessionId() }), { ok: false, reason: 'unknown-service' });
  t.same(await reg.claim({ service: 'chatbot', sessionId: newSessionId() }), { ok: false, reason: 'no-ready-instance' });
  await hs.close({ revoke: true });
});

t.test('concurrent claims in one process never share an instance', async (t) => {
  const { reg } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  for (let i = 0; i < 20; i++) await hs.putInstance(inst(`i${i}`, 'h1', null));
  await new Promise((r) => setImmediate(r));
  const results = await Promise.all(Array.from({ length: 30 }, () => reg.claim({ service: 'chatbot', sessionId: newSessionId() })));
  const got = results.filter((r) => r.ok).map((r) => (r.ok ? r.instance.id : ''));
  t.equal(got.length, 20, 'every instance claimed once');
  t.equal(new Set(got).size, 20, 'no instance twice');
  await hs.close({ revoke: true });
});

t.test('idempotency key returns the first session', async (t) => {
  const { reg } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  await hs.putInstance(inst('i1', 'h1', null));
  await hs.putInstance(inst('i2', 'h1', null));
  await new Promise((r) => setImmediate(r));
  const a = await reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'k1' });
  const b = await reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'k1' });
  t.ok(a.ok && b.ok);
  if (a.ok && b.ok) {
    t.equal(b.session.id, a.session.id, 'same session');
    t.equal(b.created, false);
  }
  await hs.close({ revoke: true });
});

t.test('ending a session leaves a tombstone; lookups say ended', async (t) => {
  const { reg, store } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  await hs.putInstance(inst('i1', 'h1', null));
  await new Promise((r) => setImmediate(r));
  const sid = newSessionId();
  const r = await reg.claim({ service: 'chatbot', sessionId: sid });
  t.ok(r.ok);
  t.equal((await reg.lookupSession(sid)).state, 'active');
  t.equal(await reg.endSession(sid, 'ended'), true);
  t.equal(await reg.endSession(sid, 'ended'), false, 'second end is a no-op');
  const l = await reg.lookupSession(sid);
  t.equal(l.state, 'ended');
  t.ok(JSON.parse((await store.get('/wp-test/claims/chatbot/i1'))!.value).ended, 'claim marked ended, not deleted');
  t.same(await reg.lookupSession(newSessionId()), { state: 'unknown' });
  t.same(await reg.claim({ service: 'chatbot', sessionId: sid }), { ok: false, reason: 'session-ended' }, 'an ended id cannot be reused');
  await hs.close({ revoke: true });
});

t.test('a session past its max lifetime is expired on lookup', async (t) => {
  let now = 1_000_000;
  const store = new MemoryKvStore(() => now);
  const reg = new Registry(store, { prefix: '/wp-test/', now: () => now });
  t.teardown(async () => { await reg.close(); await store.close(); });
  await reg.putService(spec({ session: { idleTimeoutSec: 30, maxLifetimeSec: 60 } }));
  await reg.cache();
  const hs = await reg.openHost(host('h1'), 1000);
  await hs.putInstance(inst('i1', 'h1', null));
  await new Promise((r) => setImmediate(r));
  const sid = newSessionId();
  t.ok((await reg.claim({ service: 'chatbot', sessionId: sid })).ok);
  now += 61_000;
  const l = await reg.lookupSession(sid);
  t.equal(l.state, 'ended');
  if (l.state === 'ended') t.equal(l.tombstone.reason, 'expired');
  await hs.close({ revoke: true });
});

t.test('idle sessions expire with their lease; touch keeps them', async (t) => {
  const store = new MemoryKvStore();
  const reg = new Registry(store, { prefix: '/wp-test/', touchFlushMs: 100 });
  t.teardown(async () => { await reg.close(); await store.close(); });
  await reg.putService(spec({ session: { idleTimeoutSec: 1, maxLifetimeSec: 60 } }));
  const cache = await reg.cache();
  const hs = await reg.openHost(host('h1'));
  await hs.putInstance(inst('i1', 'h1', null));
  await hs.putInstance(inst('i2', 'h1', null));
  await new Promise((r) => setImmediate(r));
  const a = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
  const b = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
  if (!a.ok || !b.ok) return t.fail('claims');
  const deadline = Date.now() + 2500;
  while (Date.now() < deadline) {
    reg.touch(a.session);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(cache.sessions.has(a.session.id), 'touched session alive after 2.5x its idle timeout');
  t.notOk(cache.sessions.has(b.session.id), 'idle session expired');
  t.notOk(cache.claims.has(b.instance.id), 'its claim went with it');
  await hs.close({ revoke: true });
});

t.test('host lease loss: records are put again, a slot taken meanwhile is reported', async (t) => {
  const { reg, store, cache } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  t.ok(await hs.takeSlot('chatbot', 0, 'i1'));
  await hs.putInstance(inst('i1', 'h1', 0));
  const other = await reg.openHost(host('h2'));
  const lost: unknown[] = [];
  hs.on('slot-lost', (...a: unknown[]) => lost.push(a));
  const restored = new Promise((r) => hs.once('restored', r));
  // The lease vanishes; before h1 recovers, h2 takes the slot.
  const leaseId = hs.leaseId!;
  const takeWhileLost = new Promise<boolean>((resolve) => hs.once('lost', () => resolve(other.takeSlot('chatbot', 0, 'j1'))));
  store.loseLease(leaseId);
  t.equal(await takeWhileLost, true);
  await restored;
  t.ok(await store.get('/wp-test/hosts/h1'), 'host record back');
  t.ok(await store.get('/wp-test/instances/chatbot/i1'), 'instance back');
  t.same(lost, [['chatbot', 0, 'i1']], 'slot loss reported');
  t.equal(JSON.parse((await store.get('/wp-test/instances/chatbot/i1'))!.value).slot, null, 'the instance no longer names the slot it lost');
  t.equal(JSON.parse((await store.get('/wp-test/slots/chatbot/0'))!.value).instanceId, 'j1');
  t.ok(cache.hosts.has('h1'));
  await hs.close({ revoke: true });
  await other.close({ revoke: true });
});

t.test('claims spread sessions across hosts', async (t) => {
  const { reg } = await setup(t);
  const h1 = await reg.openHost(host('h1'));
  const h2 = await reg.openHost(host('h2'));
  for (let i = 0; i < 4; i++) await h1.putInstance(inst(`a${i}`, 'h1', null));
  for (let i = 0; i < 4; i++) await h2.putInstance(inst(`b${i + 10}`, 'h2', null));
  await new Promise((r) => setImmediate(r));
  const hosts: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
    if (r.ok) hosts.push(r.instance.host);
    await new Promise((r) => setImmediate(r));
  }
  const n1 = hosts.filter((h) => h === 'h1').length;
  t.equal(hosts.length, 6);
  t.equal(n1, 3, `3 sessions on each host (${hosts.join(',')})`);
  await h1.close({ revoke: true });
  await h2.close({ revoke: true });
});

t.test('regression (slot leak after etcd outage): a slot consumed by a claim while the lease was lost is not put back', async (t) => {
  const { reg, store } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  t.ok(await hs.takeSlot('chatbot', 0, 'i1'));
  await hs.putInstance(inst('i1', 'h1', 0));
  const lost: unknown[] = [];
  hs.on('slot-lost', (...a: unknown[]) => lost.push(a));
  const restored = new Promise((r) => hs.once('restored', r));
  // The lease goes; before the agent recovers, its instance is put back by hand as the
  // cache last saw it and claimed (as a router would, from a cache that still had it).
  const claimedWhileLost = new Promise<boolean>((resolve) => hs.once('lost', () => {
    void (async () => {
      await store.txn([], [{ type: 'put', key: '/wp-test/instances/chatbot/i1', value: JSON.stringify(inst('i1', 'h1', 0)) }]);
      await new Promise((r) => setImmediate(r));
      const r = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
      resolve(r.ok);
    })();
  }));
  store.loseLease(hs.leaseId!);
  t.equal(await claimedWhileLost, true, 'claimed during the outage');
  await restored;
  t.notOk(await store.get('/wp-test/slots/chatbot/0'), 'the consumed slot stays free for a replacement');
  t.same(lost, [], 'a claimed instance is not reported as surplus (regression: claimed instance retired after lease loss)');
  await hs.close({ revoke: true });
});

t.test('ready instances whose records changed since the cache saw them are still claimed', async (t) => {
  const { reg, store, cache } = await setup(t, () => new LaggingStore());
  const hs = await reg.openHost(host('h1'));
  for (let i = 0; i < 6; i++) await hs.putInstance(inst(`i${i}`, 'h1', null));
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('chatbot'), 6);
  // The agent puts every record again (as after renewing its host lease) and the cache has
  // not seen those writes yet: each cached version is stale, each instance still ready.
  store.hold();
  for (let i = 0; i < 6; i++) await hs.putInstance(inst(`i${i}`, 'h1', null));
  const results = await Promise.all(Array.from({ length: 4 }, () => reg.claim({ service: 'chatbot', sessionId: newSessionId() })));
  const got = results.map((r) => (r.ok ? r.instance.id : `failed: ${r.reason}`));
  t.equal(got.filter((x) => x.startsWith('i')).length, 4, `4 concurrent claims succeed (${got.join(', ')})`);
  t.equal(new Set(got).size, 4, 'on 4 different instances');
  store.release();
  await new Promise((r) => setImmediate(r));
  t.equal(cache.ready.count('chatbot'), 2, 'two left ready');
  await hs.close({ revoke: true });
});

t.test('a claim that finds the only ready instance in another claim\'s hands waits for that attempt', async (t) => {
  const { reg } = await setup(t);
  const hs = await reg.openHost(host('h1'));
  await hs.putInstance(inst('i0', 'h1', null));
  await new Promise((r) => setImmediate(r));
  const first = await reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'k1' });
  t.ok(first.ok && first.instance.id === 'i0');
  await hs.putInstance(inst('i1', 'h1', null));
  await new Promise((r) => setImmediate(r));
  // A client retry (same Idempotency-Key) and a new session arrive together. The retry
  // tries i1 first and loses on its key (it gets its existing session); the new session,
  // which found i1 in the retry's hands, then claims it instead of reporting none ready.
  const [retry, fresh] = await Promise.all([
    reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'k1' }),
    reg.claim({ service: 'chatbot', sessionId: newSessionId() }),
  ]);
  t.ok(retry.ok && !retry.created && first.ok && retry.session.id === first.session.id, 'the retry gets its first session');
  t.ok(fresh.ok && fresh.created, `the new session is claimed (${fresh.ok ? fresh.instance.id : fresh.reason})`);
  t.equal(fresh.ok && fresh.instance.id, 'i1');
  await hs.close({ revoke: true });
});
