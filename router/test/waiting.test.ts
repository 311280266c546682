// Waiting for a booting instance: FIFO order, bounded wait, 503 + Retry-After from the boot
// ETA, a client that leaves gives up its place, metrics.
import t from 'tap';
import { WaitQueue } from '../src/wait-queue.js';
import { retryAfterSec } from '../src/boot-eta.js';
import { harness, routerUrl, testSpec } from './fixtures.js';
import { RegistryError, type InstanceRecord } from '@warmpool/registry';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('waiters get instances in arrival order as boots finish', async (t) => {
  const h = await harness({ ready: 0 });
  t.teardown(() => h.close());
  const booting = [];
  for (let i = 0; i < 3; i++) booting.push(await h.addInstance({ state: 'booting' }));
  const order: number[] = [];
  const pending: Promise<{ statusCode: number; json(): { instanceId: string } }>[] = [];
  for (let i = 0; i < 3; i++) {
    pending.push(h.app.inject({ method: 'POST', url: '/v1/sessions?wait=10', payload: { service: 'chatbot' } }).then((r) => { order.push(i); return r; }));
    await until(() => h.app.warmpool.claimer.queue.waiting('chatbot') === i + 1);
  }
  const metrics = await h.app.inject({ url: '/metrics' });
  t.match(metrics.body, /warmpool_router_waiting_requests\{service="chatbot"\} 3/, 'waiting gauge');
  for (let i = 0; i < 3; i++) {
    await h.setState(booting[i]!, 'ready');
    await until(() => order.length === i + 1);
  }
  t.same(order, [0, 1, 2], 'first come, first served');
  const results = await Promise.all(pending);
  t.same(results.map((r) => r.statusCode), [201, 201, 201]);
  t.same(results.map((r) => r.json().instanceId), booting.map((b) => b.id), 'each got the next instance to finish booting');
  const after = await h.app.inject({ url: '/metrics' });
  t.match(after.body, /warmpool_router_sessions_waited_for_boot_total\{service="chatbot"\} 3/);
  t.match(after.body, /warmpool_router_claim_duration_seconds_count\{service="chatbot",outcome="waited"\} 3/);
  t.match(after.body, /warmpool_router_active_sessions\{service="chatbot"\} 3/);
});

// Regression (pool-burst under load: waiters got 503 while etcd was down for 3 s, long before
// their wait ended): a waiter whose claim the registry does not take keeps its place and
// tries again until its wait ends.
t.test('a waiter whose claim fails on a registry error keeps waiting and is served', async (t) => {
  const h = await harness({ ready: 0 });
  t.teardown(() => h.close());
  const booting = await h.addInstance({ state: 'booting' });
  const pending = h.app.inject({ method: 'POST', url: '/v1/sessions?wait=10', payload: { service: 'chatbot' } });
  await until(() => h.app.warmpool.claimer.queue.waiting('chatbot') === 1);
  // The store refuses the next three claim transactions, as an etcd without a leader would.
  const txn = h.store.txn.bind(h.store);
  let refused = 0;
  h.store.txn = (async (...a: Parameters<typeof txn>) => {
    if (refused < 3 && a[1].some((op) => op.key.includes('/claims/'))) { refused++; throw new Error('etcdserver: no leader'); }
    return txn(...a);
  }) as typeof h.store.txn;
  t.teardown(() => { h.store.txn = txn; });
  await h.setState(booting, 'ready');
  const res = await pending;
  t.equal(refused, 3, 'three claim attempts were refused');
  t.equal(res.statusCode, 201, 'then the waiter got its session');
  t.equal(res.json<{ instanceId: string }>().instanceId, booting.id);
});

// Regression (pool-burst on Node 24 in a local CI: two of five requests with ?wait=90 got 503
// at once while etcd was down for 3 s): the first claim, made before the request queues, failed
// on the registry and the 503 went out although the request may wait. It waits now, like a
// queued waiter; only a request that does not wait gets the 503 at once.
t.test('a request that may wait, whose first claim fails on a registry error, waits and is served', async (t) => {
  const h = await harness({ ready: 1 });
  t.teardown(() => h.close());
  const txn = h.store.txn.bind(h.store);
  let refused = 0;
  h.store.txn = (async (...a: Parameters<typeof txn>) => {
    if (refused < 2 && a[1].some((op) => op.key.includes('/claims/'))) { refused++; throw new RegistryError('WARMPOOL_REGISTRY_UNAVAILABLE', 'registry unavailable: etcdserver: no leader', { retryable: true }); }
    return txn(...a);
  }) as typeof h.store.txn;
  t.teardown(() => { h.store.txn = txn; });
  const res = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=10', payload: { service: 'chatbot' } });
  t.equal(refused, 2, 'two claim attempts were refused');
  t.equal(res.statusCode, 201, `then the request got its session (${res.body.slice(0, 160)})`);
  t.equal(h.app.warmpool.claimer.queue.waiting('chatbot'), 0, 'and left the queue');
  // Without a wait, the registry's error is the answer at once.
  const another = await h.addInstance({ state: 'ready' });
  await until(() => h.app.warmpool.directory.cached()?.ready.count('chatbot') === 1);
  refused = 1;
  const now = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0', payload: { service: 'chatbot' } });
  t.equal(now.statusCode, 503, 'wait=0: 503 at once');
  t.equal(now.json().error.code, 'WARMPOOL_REGISTRY_UNAVAILABLE');
  t.ok(another.id, 'a ready instance was there to claim');
});

t.test('a bounded wait ends in 503 with Retry-After from the boots under way', async (t) => {
  const h = await harness({ ready: 1 });
  t.teardown(() => h.close());
  // The one ready instance booted in 40 s; take it.
  await h.agent.putService(testSpec({ bootTimeoutSec: 600 }));
  const first = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  t.equal(first.statusCode, 201);
  const claimedInst = h.instances[0]!;
  await h.host.putInstance({
    id: claimedInst.id, service: 'chatbot', host: 'host-a', state: 'claimed', address: claimedInst.address, containerId: 'c', slot: null,
    createdAt: Date.now() - 60_000, readyAt: Date.now() - 20_000, bootMs: 40_000,
  });
  await h.addInstance({ state: 'booting', createdAt: Date.now() - 10_000, bootMs: null });
  await until(() => (h.app.warmpool.directory.cached()?.instancesOf('chatbot').filter((i) => i.state === 'booting').length ?? 0) === 1);
  const started = Date.now();
  const res = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0.3', payload: { service: 'chatbot' } });
  const took = Date.now() - started;
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'WARMPOOL_NO_READY_INSTANCE');
  const ra = Number(res.headers['retry-after']);
  t.ok(ra >= 28 && ra <= 31, `Retry-After ${ra} s: 40 s typical boot, 10 s in`);
  t.ok(took >= 250 && took < 3000, `waited the bounded time (${took} ms)`);
  t.equal(h.app.warmpool.claimer.queue.waiting('chatbot'), 0, 'left the queue');

  const capped = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0', payload: { service: 'chatbot' } });
  t.equal(capped.statusCode, 503, 'wait=0 answers at once');
});

t.test('?wait is capped by the router maximum', async (t) => {
  const h = await harness({ ready: 0, router: { config: { wait: { defaultSec: 0.1, maxSec: 0.2 } } } });
  t.teardown(() => h.close());
  const started = Date.now();
  const res = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=3600', payload: { service: 'chatbot' } });
  t.equal(res.statusCode, 503);
  t.ok(Date.now() - started < 2000, 'capped at 0.2 s');
});

t.test('a client that disconnects while waiting leaves the queue', async (t) => {
  const h = await harness({ ready: 0, listen: true });
  t.teardown(() => h.close());
  const ac = new AbortController();
  const p = fetch(`${routerUrl(h.app)}/v1/sessions?wait=30`, {
    method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}',
  }).catch((e: unknown) => e);
  await until(() => h.app.warmpool.claimer.queue.waiting('chatbot') === 1);
  ac.abort();
  await p;
  await until(() => h.app.warmpool.claimer.queue.waiting('chatbot') === 0);
  // The next instance goes to the next client, not to the one that left.
  const inst = await h.addInstance({ state: 'booting' });
  const next = h.app.inject({ method: 'POST', url: '/v1/sessions?wait=10', payload: { service: 'chatbot' } });
  await until(() => h.app.warmpool.claimer.queue.waiting('chatbot') === 1);
  await h.setState(inst, 'ready');
  t.equal((await next).statusCode, 201);
});

t.test('WaitQueue: one turn per ready instance, oldest first, no overtaking', async (t) => {
  let ready = 0;
  const q = new WaitQueue(() => ready);
  const a = q.join('s', 10_000);
  const b = q.join('s', 10_000);
  const turns: string[] = [];
  const pa = a.next().then((o) => turns.push(`a:${o}`));
  const pb = b.next().then((o) => turns.push(`b:${o}`));
  ready = 1;
  q.pump('s');
  await pa;
  t.same(turns, ['a:turn'], 'only the oldest is woken for one instance');
  a.leave();
  q.pump('s');
  await pb;
  t.same(turns, ['a:turn', 'b:turn']);
  b.leave();
  t.equal(q.waiting('s'), 0);

  const c = q.join('s', 20);
  ready = 0;
  t.equal(await c.next(), 'timeout');
  c.leave();
  const d = q.join('s', 10_000);
  const pd = d.next();
  q.close();
  t.equal(await pd, 'closed');
  d.leave();
});

t.test('retryAfterSec estimates from measured boots, else the boot timeout', async (t) => {
  const now = 1_000_000;
  const inst = (o: Partial<InstanceRecord>): InstanceRecord => ({
    id: 'i', service: 's', host: 'h', state: 'ready', address: '', containerId: '', slot: null, createdAt: now, readyAt: null, bootMs: null, ...o,
  });
  const spec = testSpec({ bootTimeoutSec: 120 });
  t.equal(retryAfterSec([], spec, now), 5, 'nothing booting: a short default');
  t.equal(retryAfterSec([inst({ state: 'booting', createdAt: now - 20_000 })], spec, now), 100, 'no measurement: boot timeout');
  const measured = [inst({ bootMs: 30_000 }), inst({ bootMs: 40_000 }), inst({ bootMs: 50_000 })];
  t.equal(retryAfterSec([...measured, inst({ state: 'booting', createdAt: now - 10_000 })], spec, now), 30, 'median 40 s, 10 s in');
  t.equal(retryAfterSec([...measured, inst({ state: 'booting', createdAt: now - 60_000 })], spec, now), 1, 'overdue: at least 1 s');
  const two = [...measured, inst({ state: 'booting', createdAt: now - 30_000 }), inst({ state: 'booting', createdAt: now })];
  t.equal(retryAfterSec(two, spec, now, 1), 40, 'second in line waits for the second boot');
  t.equal(retryAfterSec(two, spec, now, 5), 120, 'beyond the boots under way: position 5 of 2 boots is the second boot two rounds on');
  t.equal(retryAfterSec(two, spec, now, 2), 50, 'third in line: the first boot, then one more boot time');
  t.equal(retryAfterSec(measured, spec, now, 1), 80, 'nothing booting (fleet full): one boot time per place in the queue');
});

t.test('retryAfterSec counts every timed stage: a long warm-up is part of the wait (issue 16)', async (t) => {
  const now = 1_000_000;
  const inst = (o: Partial<InstanceRecord>): InstanceRecord => ({
    id: 'i', service: 's', host: 'h', state: 'ready', address: '', containerId: '', slot: null, createdAt: now, readyAt: null, bootMs: null, ...o,
  });
  const spec = testSpec({ bootTimeoutSec: 120 });
  // Health answers after 2 s, but the model loads during the 30 s warm-up (Ollama).
  const measured = [1, 2, 3].map(() => inst({ bootMs: 2_000, stages: { createMs: 1_000, bootMs: 2_000, warmupMs: 30_000 } }));
  t.equal(retryAfterSec([...measured, inst({ state: 'warming', createdAt: now - 5_000 })], spec, now), 28, '33 s start, 5 s in (a warming instance is on its way)');
  t.equal(retryAfterSec([...measured, inst({ state: 'booting', createdAt: now })], spec, now), 33);
  const specWarm = testSpec({ bootTimeoutSec: 60, warmup: [{ method: 'POST', path: '/api/generate', timeoutSec: 90, expectStatus: 200 }] });
  t.equal(retryAfterSec([inst({ state: 'booting', createdAt: now })], specWarm, now), 150, 'no measurement: boot timeout plus the warm-up timeouts');
});
