// Regression tests of issue 13, items 6 and 7, against a fake engine and the in-memory
// registry: the boot timeout counts the app's boot, not the engine's slowness; container
// creation has its own deadline; host faults are shown as such and never grow the service's
// crash backoff; and a death is named by the engine's exit reason, not by the first symptom.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryKvStore, Registry, instanceKey, type InstanceRecord, type ServiceSpec } from '@warmpool/registry';
import { reportToken, type StateReport } from '@warmpool/sidecar/protocol';
import { startAgent, type AgentHandle, type AgentOptions, type AgentTiming } from '../src/agent.js';
import { AgentError } from '../src/errors.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

const PREFIX = '/unit-faults/';
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'chat', image: 'img', containerPort: 8000, warm: 1, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 }, ...over,
});

async function until<T>(fn: () => T | undefined | false, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const post = postReport;

async function setup(t: Test, runtime: FakeRuntime, timing: Partial<AgentTiming> = {}, over: Pick<AgentOptions, 'allow'> = {}) {
  let logged = '';
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { logged += String(chunk); cb(); } }));
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-agent-faults-'));
  const agent: AgentHandle = await startAgent({
    store, prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 2000, backoffMaxMs: 4000, dockerRetryMs: 20, ...timing }, logger, ...over,
  });
  const secret = await registry.clusterSecret();
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const report = (id: string, r: Omit<StateReport, 'instanceId'>): Promise<number> =>
    post(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, ...r });
  const instances = (): InstanceRecord[] => [...cache.instances.values()].map((v) => v.value);
  return { registry, cache, runtime, agent, report, instances, logs: () => logged };
}

t.test('13.6 a slow engine does not eat the boot timeout: boot counts from the app container\'s start', async (t) => {
  const runtime = new FakeRuntime();
  // Creating and starting take 3 x 400 ms; the app itself is ready well within its 0.5 s.
  runtime.delays = { create: 400, start: 400 };
  const s = await setup(t, runtime);
  await s.registry.putService(spec({ bootTimeoutSec: 0.5 }));
  const booting = await until(() => s.instances().find((i) => i.state === 'booting' && i.address), 'a booting record with its address');
  const at = Date.now();
  t.equal(await s.report(booting.id, { state: 'ready', bootMs: 100, at }), 204);
  const ready = await until(() => s.instances().find((i) => i.id === booting.id && i.state === 'ready'), 'the instance ready', 3000);
  t.equal(s.instances().filter((i) => i.state === 'failed').length, 0, 'no boot-timeout failure');
  t.ok(ready.stages, 'stages recorded');
  t.ok(ready.stages!.createMs! >= 700, `container creation and start timed as their own stage: ${ready.stages!.createMs} ms`);
  t.ok(ready.bootMs! >= 0 && ready.bootMs! < 500, `boot measured from the app container's start: ${ready.bootMs} ms`);
  t.same(s.agent.status().backoff, {}, 'no crash backoff');
});

t.test('13.6 container creation has its own deadline: a hung engine is a host fault, not the service\'s', async (t) => {
  const runtime = new FakeRuntime();
  runtime.delays = { create: 1500, start: 0 };
  const s = await setup(t, runtime, { createTimeoutMs: 300 });
  await s.registry.putService(spec());
  const failed = await until(() => s.instances().find((i) => i.state === 'failed' && /host fault/.test(i.reason ?? '')), 'a failed record naming the host', 5000);
  t.match(failed.reason, /host fault \(engine too slow\).*did not finish within 0\.3 s.*this host retries in/, String(failed.reason));
  t.same(s.agent.status().backoff, {}, 'the service\'s crash backoff is untouched');
  t.ok(s.agent.status().hostBackoff['*'], 'the host backs off instead');
  // The container the engine created after the deadline is removed, not left behind.
  runtime.delays = { create: 0, start: 0 };
  await until(() => runtime.byRole('app').every((c) => c.running) && runtime.calls.remove >= 1, 'the late container removed', 8000);
  await until(() => s.instances().find((i) => i.state === 'ready' || (i.state === 'booting' && i.address)), 'a new attempt once the engine is fast again', 10_000);
  await until(() => Object.keys(s.agent.status().hostBackoff).length === 0 || undefined, 'the host backoff reset by a successful launch');
});

t.test('13.6 a full disk is reported as a host fault and does not grow the service\'s backoff', async (t) => {
  const runtime = new FakeRuntime();
  runtime.createError = new AgentError('WARMPOOL_CONTAINER_FAILED', 'create container x: write /var/lib/docker/tmp: no space left on device', { retryable: true });
  const s = await setup(t, runtime);
  await s.registry.putService(spec());
  const failed = await until(() => s.instances().find((i) => i.state === 'failed'), 'a failed record');
  t.match(failed.reason, /host fault \(host out of resources\).*no space left on device/, String(failed.reason));
  t.same(s.agent.status().backoff, {}, 'not charged to the service');
  t.ok(s.agent.status().hostBackoff['*']);
});

t.test('13.6b an engine error that is no host fault counts against the service: backoff, not a tight loop', async (t) => {
  const runtime = new FakeRuntime();
  // e.g. runc refusing the container's configuration at start: a 500 that every retry meets.
  runtime.createError = new AgentError('WARMPOOL_CONTAINER_FAILED', 'create container x: OCI runtime create failed: invalid configuration', { retryable: true });
  const s = await setup(t, runtime);
  await s.registry.putService(spec());
  const failed = await until(() => s.instances().find((i) => i.state === 'failed'), 'a failed record');
  t.match(failed.reason, /^launch failed: create container x: OCI runtime create failed/, String(failed.reason));
  t.ok(s.agent.status().backoff.chat, 'the service backs off');
  t.same(s.agent.status().hostBackoff, {}, 'no host fault');
});

t.test('13.6c an engine error quoting a secret value is recorded and logged without it', async (t) => {
  const runtime = new FakeRuntime();
  const SECRET = 'tok-SECRET-in-engine-error-77';
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'tok'), `${SECRET}\n`);
  runtime.createError = new AgentError('WARMPOOL_CONTAINER_FAILED', `create container x: env "TOKEN=${SECRET}" refused`, { retryable: false });
  const s = await setup(t, runtime, {}, { allow: { hostPaths: [], ipcHost: false, secretDirs: [dir], volumes: [] } });
  await s.registry.putService(spec({ secretEnv: { TOKEN: path.join(dir, 'tok') } }));
  const failed = await until(() => s.instances().find((i) => i.state === 'failed'), 'a failed record');
  t.match(failed.reason, /env "TOKEN=\[secret\]" refused/, String(failed.reason));
  t.notMatch(s.logs(), new RegExp(SECRET), 'not in the agent log');
  t.match(s.logs(), /instance launch failed/, 'the failure itself is logged');
});

/** How the engine learns of an OOM kill after the exit: its flag only, or its oom event too, after `afterMs`. */
interface LateOom { afterMs: number; event: boolean }

async function deathReason(t: Test, exit: { code: number; oom?: boolean }, opts: { memoryMb?: number; lateOom?: LateOom } = {}): Promise<string> {
  const runtime = new FakeRuntime();
  const s = await setup(t, runtime);
  await s.registry.putService(spec({ resources: { memoryMb: opts.memoryMb ?? 0, cpus: 0 } }));
  const booting = await until(() => s.instances().find((i) => i.state === 'booting' && i.address), 'booting');
  await s.report(booting.id, { state: 'ready', bootMs: 10, at: Date.now() });
  await until(() => s.instances().find((i) => i.state === 'ready'), 'ready');
  const app = runtime.byRole('app').find((c) => c.spec.labels['warmpool.instance'] === booting.id)!;
  // The container stopped; the sidecar's failed liveness probes arrive before any engine event.
  runtime.exit(app.id, exit, false);
  const late = opts.lateOom;
  if (late) setTimeout(() => runtime.flagOom(app.id, late.event), late.afterMs);
  await s.report(booting.id, { state: 'unhealthy', bootMs: 10, at: Date.now(), reason: '2 failed liveness probes in a row (last: connection refused)' });
  const failed = await until(() => s.instances().find((i) => i.id === booting.id && i.state === 'failed' && /; failure \d+ in a row/.test(i.reason ?? '')), 'the final failed record');
  return failed.reason ?? '';
}

t.test('13.7 the cause of death is the container\'s exit reason, whichever symptom came first', async (t) => {
  const oom = await deathReason(t, { code: 137, oom: true });
  t.match(oom, /^app container ran out of memory \(OOM-killed, exit code 137\)/, oom);
  t.notMatch(oom, /liveness/, 'not the symptom noticed first');
  const killed = await deathReason(t, { code: 137 });
  t.match(killed, /^app container was killed by SIGKILL \(exit code 137\)/, killed);
  const exited = await deathReason(t, { code: 3 });
  t.match(exited, /^app container exited with code 3/, exited);
});

t.test('13.7 an OOM kill the engine flags after the exit is still recorded as out of memory', async (t) => {
  // The runtime may deliver its OOM event after the exit: the first inspect shows exit code
  // 137 without the OOM flag (seen on the real engine under load).
  const flagged = await deathReason(t, { code: 137 }, { memoryMb: 96, lateOom: { afterMs: 400, event: false } });
  t.match(flagged, /^app container ran out of memory \(OOM-killed, exit code 137\)/, flagged);
  const evented = await deathReason(t, { code: 137 }, { memoryMb: 96, lateOom: { afterMs: 400, event: true } });
  t.match(evented, /^app container ran out of memory \(OOM-killed, exit code 137\)/, evented);
  // Without a memory limit a SIGKILL is not waited on: no OOM kill is possible.
  const unlimited = await deathReason(t, { code: 137 }, { lateOom: { afterMs: 400, event: false } });
  t.match(unlimited, /^app container was killed by SIGKILL \(exit code 137\)/, unlimited);
});
