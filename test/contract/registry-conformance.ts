// The Registry's promises (exclusive claims, idempotency, session end, host lease) on any
// KvStore backend. Run against memory, a real etcd and a real Consul agent.
import { randomBytes } from 'node:crypto';
import { Registry, newSessionId, parseServiceSpec, type HostRecord, type InstanceRecord, type KvStore, type KvWatchHandlers } from '@warmpool/registry';
import { eventually } from '@warmpool/test';

type T = {
  test(name: string, fn: (t: T) => Promise<void>): Promise<void>;
  equal(a: unknown, b: unknown, msg?: string): void;
  ok(a: unknown, msg?: string): void;
  notOk(a: unknown, msg?: string): void;
  same(a: unknown, b: unknown, msg?: string): void;
  teardown(fn: () => unknown): void;
};

const host = (id: string): HostRecord => ({ id, address: '127.0.0.1', capacity: { instances: 100, memoryMb: 0 }, labels: {}, draining: false, startedAt: 0, agentVersion: 'test' });
const inst = (id: string, h: string): InstanceRecord => ({ id, service: 'chatbot', host: h, state: 'ready', address: `127.0.0.1:${40000 + Number(id.slice(1))}`, containerId: '', slot: null, createdAt: 0, readyAt: 0, bootMs: 0 });

/** The store, with its watch events held back on demand: a cache that lags behind the store. */
function lagging(store: KvStore): { store: KvStore; hold(): void; release(): void } {
  let held: (() => void)[] | undefined;
  const lag = (h: KvWatchHandlers): KvWatchHandlers => ({
    ...h,
    onEvents: (events, rev) => { if (held) held.push(() => h.onEvents(events, rev)); else h.onEvents(events, rev); },
  });
  const watch: KvStore['watch'] = (prefix, after, h) => store.watch(prefix, after, lag(h));
  const watchRange: KvStore['watchRange'] = store.watchRange && ((start, end, after, h) => store.watchRange!(start, end, after, lag(h)));
  const wrapped = new Proxy(store, {
    get(target, prop) {
      if (prop === 'watch') return watch;
      if (prop === 'watchRange') return watchRange;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    store: wrapped,
    hold: () => { held ??= []; },
    release: () => { const q = held ?? []; held = undefined; for (const f of q) f(); },
  };
}

export async function runRegistryConformance(t: T, makeStore: () => Promise<{ store: KvStore; cleanup(): Promise<void> }>, opts: { leaseTtlSec: number }): Promise<void> {
  const setup = async (t: T) => {
    const { store, cleanup } = await makeStore();
    const reg = new Registry(store, { prefix: `/conf-${randomBytes(4).toString('hex')}/` });
    t.teardown(async () => { await reg.close(); await cleanup(); });
    const spec = parseServiceSpec({ name: 'chatbot', image: 'x', session: { idleTimeoutSec: Math.max(opts.leaseTtlSec, 10), maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('spec');
    await reg.putService(spec.spec);
    const cache = await reg.cache();
    const hs = await reg.openHost(host('h1'), opts.leaseTtlSec);
    t.teardown(() => hs.close({ revoke: true }));
    /** A second registry on its own connection: another router. */
    const other = async (): Promise<Registry> => {
      const second = await makeStore();
      const r2 = new Registry(second.store, { prefix: reg.keys.prefix });
      t.teardown(async () => { await r2.close(); await second.cleanup(); });
      await r2.cache();
      return r2;
    };
    return { store, reg, cache, hs, other };
  };

  await t.test('concurrent claims: 10 instances, 25 claimers, each instance once', async (t) => {
    const { reg, cache, hs, other } = await setup(t);
    const reg2 = await other();
    for (let i = 0; i < 10; i++) await hs.putInstance(inst(`i${i}`, 'h1'), { sessionLeaseTtlSec: Math.max(opts.leaseTtlSec, 10) });
    await eventually(() => cache.ready.count('chatbot') === 10, { timeoutMs: 15_000 });
    // Two registries (two "routers") on the same store race for the same instances.
    const c2 = await reg2.cache();
    await eventually(() => c2.ready.count('chatbot') === 10, { timeoutMs: 15_000 });
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => (i % 2 ? reg2 : reg).claim({ service: 'chatbot', sessionId: newSessionId() })));
    const won = results.flatMap((r) => (r.ok ? [r.instance.id] : []));
    t.equal(won.length, 10, 'all 10 claimed');
    t.equal(new Set(won).size, 10, 'none twice');
    await eventually(() => cache.ready.count('chatbot') === 0, { timeoutMs: 15_000 });
  });

  await t.test('idempotent claims: same session id and same Idempotency-Key', async (t) => {
    const { reg, cache, hs } = await setup(t);
    for (let i = 0; i < 3; i++) await hs.putInstance(inst(`i${i}`, 'h1'));
    await eventually(() => cache.ready.count('chatbot') === 3, { timeoutMs: 15_000 });
    const sid = newSessionId();
    const a = await reg.claim({ service: 'chatbot', sessionId: sid });
    const b = await reg.claim({ service: 'chatbot', sessionId: sid });
    t.ok(a.ok && b.ok && a.instance.id === b.instance.id && !b.created, 'same session, same instance');
    const c = await reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'retry-1' });
    const d = await reg.claim({ service: 'chatbot', sessionId: newSessionId(), idempotencyKey: 'retry-1' });
    t.ok(c.ok && d.ok && c.session.id === d.session.id, 'same idempotency key, same session');
  });

  await t.test('ending a session: claim gone, tombstone says ended', async (t) => {
    const { reg, cache, hs, store } = await setup(t);
    await hs.putInstance(inst('i1', 'h1'));
    await eventually(() => cache.ready.count('chatbot') === 1, { timeoutMs: 15_000 });
    const sid = newSessionId();
    const r = await reg.claim({ service: 'chatbot', sessionId: sid });
    t.ok(r.ok);
    t.equal(await reg.endSession(sid, 'ended'), true);
    const claim = await store.get(reg.keys.claim('chatbot', 'i1'));
    t.ok(claim && (JSON.parse(claim.value) as { ended?: boolean }).ended, 'claim marked ended');
    t.equal(cache.ready.count('chatbot'), 0, 'the used instance is not claimable again');
    const again = await reg.claim({ service: 'chatbot', sessionId: newSessionId() });
    t.same(again, { ok: false, reason: 'no-ready-instance' }, 'regression (reclaim after agent death): a new session never gets it');
    const l = await reg.lookupSession(sid);
    t.equal(l.state, 'ended');
  });

  await t.test('a host that goes away takes its instances with it', async (t) => {
    const { reg, cache } = await setup(t);
    const hs2 = await reg.openHost(host('h2'), opts.leaseTtlSec);
    await hs2.putInstance(inst('i7', 'h2'));
    await eventually(() => cache.instances.has('i7'), { timeoutMs: 15_000 });
    await hs2.close({ revoke: true });
    await eventually(() => !cache.instances.has('i7') && !cache.hosts.has('h2'), { timeoutMs: 15_000, what: 'host gone' });
    t.ok(true, 'instances and host record left with the lease');
  });

  await t.test('records rewritten behind a lagging cache: concurrent claims still each get an instance', async (t) => {
    const { reg, cache, hs } = await setup(t);
    const second = await makeStore();
    const lag = lagging(second.store);
    const router = new Registry(lag.store, { prefix: reg.keys.prefix });
    t.teardown(async () => { await router.close(); await second.cleanup(); });
    const idle = Math.max(opts.leaseTtlSec, 10);
    for (let i = 0; i < 6; i++) await hs.putInstance(inst(`i${i}`, 'h1'), { sessionLeaseTtlSec: idle });
    const rc = await router.cache();
    await eventually(() => rc.ready.count('chatbot') === 6, { timeoutMs: 15_000 });
    // The host puts its records again (as after renewing its lease); this router's cache
    // has not seen it: every cached version is stale while every instance is still ready.
    lag.hold();
    for (let i = 0; i < 6; i++) await hs.putInstance(inst(`i${i}`, 'h1'), { sessionLeaseTtlSec: idle });
    const results = await Promise.all(Array.from({ length: 4 }, () => router.claim({ service: 'chatbot', sessionId: newSessionId() })));
    const won = results.map((r) => (r.ok ? r.instance.id : `failed: ${r.reason}`));
    t.equal(won.filter((x) => !x.startsWith('failed')).length, 4, `all 4 claimed (${won.join(', ')})`);
    t.equal(new Set(won).size, 4, 'on 4 different instances');
    lag.release();
    await eventually(() => cache.ready.count('chatbot') === 2 && rc.ready.count('chatbot') === 2, { timeoutMs: 15_000, what: '2 left ready' });
    t.ok(true, 'both caches show the 2 instances left');
  });
}
