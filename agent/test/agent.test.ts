// The agent's wiring against a fake engine and the in-memory registry: sidecar reports over
// the socket, Docker events, an engine restart (event stream re-established, full re-list),
// and the lease-loss edge case of the slot design.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryKvStore, Registry, instanceKey, type ServiceSpec } from '@warmpool/registry';
import { reportToken } from '@warmpool/sidecar/protocol';
import { startAgent, type AgentHandle } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

const PREFIX = '/unit/';
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'chat', image: 'img', containerPort: 8000, warm: 2, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 }, ...over,
});

async function until(fn: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const post = postReport;

async function setup(t: Test) {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-agent-unit-'));
  const agent: AgentHandle = await startAgent({
    store, prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 50, backoffMaxMs: 200, dockerRetryMs: 20 },
  });
  const secret = await registry.clusterSecret();
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const ready = async (id: string): Promise<number> => post(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, state: 'ready', bootMs: 42, at: Date.now() });
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  const readyAll = async (): Promise<void> => {
    await until(() => instances().filter((i) => i.state === 'booting' && i.address).length >= 1, 'booting instances');
    for (const i of instances().filter((x) => x.state === 'booting')) await ready(i.id);
  };
  return { store, registry, cache, runtime, agent, secret, ready, readyAll, instances };
}

t.test('launch, report ready, events and an engine restart', async (t) => {
  const s = await setup(t);
  await s.registry.putService(spec());
  await until(() => s.runtime.byRole('sidecar').filter((c) => c.running).length === 2, 'two pods');
  t.equal(s.runtime.byRole('app').length, 2);
  const sidecar = s.runtime.byRole('sidecar')[0]!;
  const app = s.runtime.byRole('app').find((a) => a.spec.labels['warmpool.instance'] === sidecar.spec.labels['warmpool.instance'])!;
  t.equal(app.spec.networkOfContainer, sidecar.id, 'the app joins its sidecar\'s network namespace');
  t.equal(s.runtime.isolated.get(sidecar.id), 9000, 'filtered to the sidecar\'s port before the app started');

  await until(() => s.instances().filter((i) => i.state === 'booting' && i.address).length === 2, 'booting records');
  const [a, b] = s.instances();
  t.equal(await post(s.agent.socketPath, a!.id, 'wrong', { instanceId: a!.id, state: 'ready', bootMs: 1, at: 1 }), 403, 'a report without the right token is refused');
  t.equal(await post(s.agent.socketPath, 'nobody', reportToken(instanceKey(s.secret, 'nobody'), 'nobody'), { instanceId: 'nobody', state: 'ready', bootMs: 1, at: 1 }), 404);
  t.equal(await s.ready(a!.id), 204);
  t.equal(await s.ready(b!.id), 204);
  await until(() => s.instances().filter((i) => i.state === 'ready').length === 2, 'ready records');
  // From the app container's start (the engine's, here the fake's) to the sidecar's ready report.
  const boot = s.cache.instances.get(a!.id)?.value;
  t.ok(typeof boot?.bootMs === 'number' && boot.bootMs >= 0 && boot.bootMs < 5000, `boot time measured: ${boot?.bootMs} ms`);
  t.same(boot?.stages, { pullMs: 0, createMs: boot?.stages?.createMs, bootMs: boot?.bootMs, warmupMs: null }, 'stages recorded (the image was on the host: no pull)');

  // A die event: out of the ready set at once, destroyed, replaced.
  const victimApp = s.runtime.byRole('app').find((c) => c.spec.labels['warmpool.instance'] === a!.id)!;
  s.runtime.crash(victimApp.id);
  await until(() => s.cache.instances.get(a!.id)?.value.state !== 'ready', 'victim out of ready');
  await until(() => ![...s.runtime.containers.values()].some((c) => c.spec.labels['warmpool.instance'] === a!.id), 'victim removed');
  await until(() => s.runtime.byRole('app').length === 2, 'replacement launched');
  t.match(s.agent.status().backoff.chat, { failures: 1 }, 'the crash counts for the backoff');
  await s.readyAll();

  // The engine restarts: the stream ends, a container dies unheard; the agent reconnects and re-lists.
  const subsBefore = s.runtime.calls.subscribe;
  const listsBefore = s.runtime.calls.list;
  s.runtime.stop();
  await until(() => s.agent.status().docker === 'reconnecting', 'noticed the stream end');
  const unheard = s.runtime.byRole('app').find((c) => c.spec.labels['warmpool.instance'] === b!.id)!;
  s.runtime.crash(unheard.id, false);
  s.runtime.restart();
  await until(() => s.runtime.calls.subscribe > subsBefore && s.agent.status().docker === 'connected', 'resubscribed');
  t.ok(s.runtime.calls.list > listsBefore, 're-listed after reconnecting');
  await until(() => !s.cache.instances.has(b!.id) || s.cache.instances.get(b!.id)?.value.state === 'failed', 'the unheard death found by the re-list');
  await until(() => s.runtime.byRole('app').filter((c) => c.running).length === 2, 'replaced');
});

t.test('lease loss: a slot another host took meanwhile retires our instance (no overshoot)', async (t) => {
  const s = await setup(t);
  await s.registry.putService(spec({ warm: 1 }));
  await s.readyAll();
  await until(() => s.instances().some((i) => i.state === 'ready'), 'ready');
  const [mine] = s.instances();
  const host = (s.agent as unknown as { host: { leaseId: string } }).host;
  const slotKey = `${PREFIX}slots/chat/0`;
  const other = await s.store.grantLease(60);
  // The lease vanishes (partition longer than the TTL); before the agent re-puts its slot,
  // another host takes it.
  s.store.loseLease(host.leaseId);
  await s.store.txn([], [{ type: 'put', key: slotKey, value: JSON.stringify({ service: 'chat', slot: 0, instanceId: 'elsewhere', host: 'h2' }), lease: other }]);
  await until(() => ![...s.runtime.containers.values()].some((c) => c.spec.labels['warmpool.instance'] === mine!.id), 'surplus instance removed');
  await until(() => !s.cache.instances.has(mine!.id), 'its record gone');
  t.equal(JSON.parse((await s.store.get(slotKey))!.value).instanceId, 'elsewhere', 'the other host keeps the slot');
  t.equal(s.agent.status().backoff.chat, undefined, 'not counted as a failure');
  t.equal(s.runtime.byRole('app').length, 0, 'no new instance: the only slot is taken');
});

t.test('max lifetime: the agent ends the session; the instance goes with a tombstone', async (t) => {
  const s = await setup(t);
  await s.registry.putService(spec({ warm: 1, session: { idleTimeoutSec: 60, maxLifetimeSec: 1 } }));
  await s.readyAll();
  await until(() => s.instances().some((i) => i.state === 'ready'), 'ready');
  const r = await s.registry.claim({ service: 'chat', sessionId: 'AAAAAAAAAAAAAAAAAAAAAA' });
  t.ok(r.ok);
  if (!r.ok) return;
  await until(() => s.cache.tombstones.get('AAAAAAAAAAAAAAAAAAAAAA')?.value.reason === 'expired', 'session ended at its max lifetime', 5000);
  await until(() => !s.cache.instances.has(r.instance.id), 'instance destroyed');
  t.notOk([...s.runtime.containers.values()].some((c) => c.spec.labels['warmpool.instance'] === r.instance.id), 'its containers removed');
});

t.test('registry writes failing: actions are retried with a growing delay, never in a tight loop', async (t) => {
  const store = new MemoryKvStore();
  let failing = false;
  let attempts = 0;
  const txn = store.txn.bind(store);
  store.txn = async (...a: Parameters<MemoryKvStore['txn']>) => {
    if (failing && a[1].some((op) => op.key.includes('/slots/'))) { attempts++; throw new Error('etcd unavailable'); }
    return txn(...a);
  };
  const registry = new Registry(store, { prefix: PREFIX });
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-agent-unit-'));
  const agent = await startAgent({
    store, prefix: PREFIX, runtime: new FakeRuntime(), hostId: 'h1', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
  });
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  failing = true;
  const t0 = Date.now();
  await registry.putService(spec({ warm: 1 }));
  await until(() => attempts >= 3, 'three attempts');
  const took = Date.now() - t0;
  t.ok(took >= 550, `three slot attempts took ${took} ms: 200 ms, then 400 ms between them`);
  failing = false;
  await until(() => agent.status().instances.length === 1, 'recovers once the registry answers');
});

t.test('instances failing together leave one failed record, gone once the service is ready again', async (t) => {
  const s = await setup(t);
  await s.registry.putService(spec({ warm: 3 }));
  await until(() => s.instances().filter((i) => i.state === 'booting' && i.address).length === 3, 'three booting');
  for (const i of s.instances()) await s.ready(i.id);
  await until(() => s.instances().filter((i) => i.state === 'ready').length === 3, 'three ready');
  const old = new Set(s.instances().map((i) => i.id));

  // All three die in the same tick (an engine stopping its containers). Each is marked
  // failed at once (out of the ready set); then one failed record stays for the service.
  for (const c of s.runtime.byRole('app')) s.runtime.crash(c.id);
  await until(() => s.instances().filter((i) => old.has(i.id) && i.state !== 'failed').length === 0, 'old instances out');
  await until(() => s.instances().filter((i) => !old.has(i.id) && i.state === 'booting' && i.address).length === 3, 'replacements booting', 10_000);
  await until(() => s.instances().filter((i) => i.state === 'failed').length <= 1, 'one failed record left');
  t.equal(s.instances().filter((i) => i.state === 'failed').length, 1, 'exactly one failed record visible');

  for (const i of s.instances().filter((x) => x.state === 'booting')) await s.ready(i.id);
  await until(() => s.instances().filter((i) => i.state === 'ready').length === 3, 'ready again');
  await until(() => !s.instances().some((i) => i.state === 'failed'), 'failed record removed');
  t.same(s.instances().filter((i) => old.has(i.id)), [], 'no record of the failed instances left');
});

t.test('log lines name the host once, whether or not the given logger already does', async (t) => {
  const { pino } = await import('pino');
  const { Writable } = await import('node:stream');
  for (const bound of [true, false]) {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
    const logger = pino({ level: 'debug', base: bound ? { component: 'agent', host: 'h1' } : { component: 'agent' } }, sink);
    const store = new MemoryKvStore();
    const dir = mkdtempSync(path.join(tmpdir(), 'wp-agent-log-'));
    const agent = await startAgent({
      store, prefix: PREFIX, runtime: new FakeRuntime(), hostId: 'h1', address: '127.0.0.1', capacity: { instances: 1, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5, logger,
      timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 50, backoffMaxMs: 200, dockerRetryMs: 20 },
    });
    await agent.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    t.ok(lines.length > 0, `the agent logged (${bound ? 'host bound' : 'no host'} in the logger)`);
    t.ok(lines.every((l) => l.match(/"host":/g)?.length === 1), `"host" once per line (${bound ? 'host bound' : 'no host'})`);
  }
});
