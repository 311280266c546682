// The agent and image pulls, against a fake engine and the in-memory registry: one pull
// shared by every instance, the pulling phase with bytes in the record, the pull outside
// the boot clock, failures with the registry's reason and a per-image backoff (never the
// service's), pullPolicy Never, credentials from a Docker config file (never logged), and
// pulls ahead of need shown in the host record.
import t, { type Test } from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryKvStore, Registry, instanceKey, type ServiceSpec } from '@warmpool/registry';
import { REPORT_HEADER, reportPath, reportToken } from '@warmpool/sidecar/protocol';
import { startAgent, type AgentHandle } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';

const PREFIX = '/unit-pull/';
const IMAGE = '127.0.0.1:5999/warmpool/chat:v1';
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'chat', image: IMAGE, containerPort: 8000, warm: 3, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0 }, ...over,
});

async function until(fn: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => { open = r; });
  return { promise, open };
}

async function setup(t: Test, opts: { dockerConfig?: object; backoffBaseMs?: number } = {}) {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-pull-unit-'));
  let logged = '';
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { logged += String(chunk); cb(); } }));
  let dockerConfigPath: string | undefined;
  if (opts.dockerConfig) {
    dockerConfigPath = path.join(dir, 'config.json');
    writeFileSync(dockerConfigPath, JSON.stringify(opts.dockerConfig));
  }
  const agent: AgentHandle = await startAgent({
    store, prefix: PREFIX, runtime, hostId: 'h1', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: opts.backoffBaseMs ?? 300, backoffMaxMs: 2000, dockerRetryMs: 20, pullProgressMs: 20 },
    logger, ...(dockerConfigPath ? { dockerConfigPath } : {}),
  });
  const secret = await registry.clusterSecret();
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const instances = () => [...cache.instances.values()].map((v) => v.value);
  const ready = (id: string): Promise<number> => new Promise((resolve, reject) => {
    const req = http.request({ socketPath: agent.socketPath, method: 'POST', path: reportPath(id), headers: { 'content-type': 'application/json', [REPORT_HEADER]: reportToken(instanceKey(secret, id), id) } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end(JSON.stringify({ instanceId: id, state: 'ready', bootMs: 5, at: Date.now() }));
  });
  const hostImages = () => cache.hosts.get('h1')?.value.images ?? {};
  return { registry, cache, runtime, agent, instances, ready, hostImages, logs: () => logged };
}

t.test('one pull per image shared by every instance; pulling phase outside the boot clock', async (t) => {
  const s = await setup(t);
  const g = gate();
  s.runtime.pullScript.set(IMAGE, { gate: g.promise, bytes: 4000 });
  // A boot timeout shorter than the pull: the pull must not count towards it.
  const pullStarted = Date.now();
  await s.registry.putService(spec({ bootTimeoutSec: 2 }));
  await until(() => s.instances().filter((i) => i.state === 'pulling').length === 3, 'three instances pulling');
  const rec = s.instances()[0]!;
  t.same(rec.pull, { image: IMAGE, bytesDone: 2000, bytesTotal: 4000, percent: 50 }, 'bytes done / total and percent in the record');
  t.equal(s.runtime.calls.pull, 1, 'one pull for the three instances (and the pull ahead of need)');
  t.equal(s.runtime.byRole('app').length, 0, 'no container before the image is here');
  await until(() => s.hostImages()[IMAGE]?.state === 'pulling', 'host record shows the pull');
  await until(() => Date.now() - pullStarted > 2500, 'the pull outlasting the boot timeout');
  t.equal(s.instances().filter((i) => i.state === 'failed').length, 0, 'no boot timeout while pulling');
  g.open();
  await until(() => s.instances().filter((i) => i.state === 'booting' && i.address).length === 3, 'booting after the pull');
  for (const i of s.instances()) {
    t.equal(i.pull ?? null, null, 'no pull progress once booting');
    t.ok((i.stages?.pullMs ?? 0) >= 2000, `pullMs measured (${i.stages?.pullMs})`);
  }
  for (const i of s.instances()) t.equal(await s.ready(i.id), 204);
  await until(() => s.instances().filter((i) => i.state === 'ready').length === 3, 'ready');
  t.equal(s.runtime.calls.pull, 1, 'still one pull');
  await until(() => s.hostImages()[IMAGE]?.state === 'present', 'host record: image present');

  // New instances of an image the host has: no pull, and no host record rewrite per launch.
  let hostWrites = 0;
  s.cache.on('change', (c: { kind: string }) => { if (c.kind === 'hosts') hostWrites++; });
  const old = new Set(s.instances().map((i) => i.id));
  await s.registry.putService(spec({ bootTimeoutSec: 60, env: { V: '2' } }));
  await until(() => s.instances().filter((i) => !old.has(i.id) && i.state === 'booting' && i.address).length === 3, 'three new instances booting');
  t.equal(s.runtime.calls.pull, 1, 'IfNotPresent: no pull for an image the host has');
  t.ok(s.instances().filter((i) => !old.has(i.id)).every((i) => i.stages?.pullMs === 0), 'pullMs 0 when the image was there');
  t.equal(hostWrites, 0, 'the host record is not rewritten for a re-check of a present image');
});

t.test('a failed pull fails the instance with the registry\'s reason and backs off per image', async (t) => {
  const s = await setup(t, { backoffBaseMs: 400 });
  s.runtime.pullScript.set(IMAGE, { error: 'unauthorized: authentication required' });
  await s.registry.putService(spec({ warm: 1 }));
  await until(() => s.instances().some((i) => i.state === 'failed'), 'failed record');
  const failed = s.instances().find((i) => i.state === 'failed')!;
  t.match(failed.reason, /pull of 127\.0\.0\.1:5999\/warmpool\/chat:v1 failed \(auth\): unauthorized: authentication required/);
  t.match(failed.reason, /next attempt in/);
  const st = s.agent.status();
  t.same(st.backoff, {}, 'the service\'s crash backoff is untouched');
  t.ok(st.imageBackoff[IMAGE], 'the image backs off');
  t.equal(s.hostImages()[IMAGE]?.state ?? 'failed', 'failed');
  // Never a tight loop: each retry waits at least the backoff (400 ms doubling, -20 % jitter).
  await until(() => s.runtime.calls.pull >= 3, 'three pulls');
  const gaps = s.runtime.pullTimes.slice(1, 3).map((at, i) => at - s.runtime.pullTimes[i]!);
  t.ok(gaps[0]! >= 0.8 * 400 - 20 && gaps[1]! >= 0.8 * 800 - 20, `pulls spaced by the backoff (gaps ${gaps.join(', ')} ms)`);
  t.equal(s.agent.status().imageBackoff[IMAGE]?.failures, s.runtime.calls.pull, 'every pull was one backoff step: no pull outside the backoff');
  t.equal(s.instances().filter((i) => i.state === 'failed').length, 1, 'one failed record per service');
  // The registry is fixed: the next attempt after the backoff succeeds.
  s.runtime.pullScript.delete(IMAGE);
  await until(() => s.instances().some((i) => i.state === 'booting' && i.address), 'booting after the backoff', 20_000);
  const booting = s.instances().find((i) => i.state === 'booting')!;
  await s.ready(booting.id);
  await until(() => s.instances().length === 1 && s.instances()[0]!.state === 'ready', 'the failed record goes once ready');
  t.same(s.agent.status().imageBackoff, {}, 'a successful pull resets the image backoff');
});

t.test('a pull longer than pullTimeoutSec fails with a timeout', async (t) => {
  const s = await setup(t, { backoffBaseMs: 5000 });
  s.runtime.pullScript.set(IMAGE, { gate: new Promise(() => undefined) });
  await s.registry.putService(spec({ warm: 1, pullTimeoutSec: 0.3 }));
  await until(() => s.instances().some((i) => i.state === 'failed'), 'failed record');
  t.match(s.instances().find((i) => i.state === 'failed')!.reason, /failed \(timeout\): .*timed out after 0 s \(pullTimeoutSec\)/);
});

t.test('pullPolicy Never: no pull; Always: a pull even when the image is here', async (t) => {
  const s = await setup(t, { backoffBaseMs: 5000 });
  await s.registry.putService(spec({ warm: 1, pullPolicy: 'Never' }));
  await until(() => s.instances().some((i) => i.state === 'failed'), 'failed record');
  t.match(s.instances()[0]!.reason, /is not on this host and the service's pullPolicy is Never/);
  t.equal(s.runtime.calls.pull, 0, 'never pulled');

  await s.registry.putService(spec({ name: 'always', image: 'warmpool/chatbot-demo', warm: 1, pullPolicy: 'Always' }));
  await until(() => s.instances().some((i) => i.service === 'always' && i.state === 'booting' && i.address), 'always: booting');
  t.ok(s.runtime.calls.pull >= 1, 'Always pulls an image the host has');
});

t.test('credentials come from the Docker config file and are never logged', async (t) => {
  const s = await setup(t, { dockerConfig: { auths: { '127.0.0.1:5999': { auth: Buffer.from('alice:hunter2-secret').toString('base64') } } } });
  await s.registry.putService(spec({ warm: 1 }));
  await until(() => s.instances().some((i) => i.state === 'booting' && i.address), 'booting');
  t.same(s.runtime.pullAuth.get(IMAGE), { serveraddress: '127.0.0.1:5999', username: 'alice', password: 'hunter2-secret' });
  t.match(s.logs(), /image pulled/);
  t.notMatch(s.logs(), /hunter2|YWxpY2U6aHVudGVyMi1zZWNyZXQ/, 'the password is in no log line');
  t.notMatch(JSON.stringify([...s.cache.hosts.values(), ...s.cache.instances.values()]), /hunter2/, 'nor in the registry');
});

t.test('ahead of need: a service with no instance here still gets its image', async (t) => {
  const s = await setup(t);
  await s.registry.putService(spec({ warm: 0 }));
  await until(() => s.hostImages()[IMAGE]?.state === 'present', 'image present on the host');
  t.equal(s.runtime.calls.pull, 1);
  t.equal(s.runtime.byRole('app').length, 0, 'no instance was needed');
  // A service removed: its image leaves the host record.
  await s.registry.deleteService('chat');
  await until(() => s.hostImages()[IMAGE] === undefined, 'image out of the host record');
});

t.test('ahead of need: only the images of services this host may run (placement labels, GPUs)', async (t) => {
  const s = await setup(t);
  const other = '127.0.0.1:5999/warmpool/other:v1';
  const gpu = '127.0.0.1:5999/warmpool/gpu:v1';
  await s.registry.putService({ ...spec({ name: 'elsewhere', image: other, warm: 0 }), placement: { hostLabels: { gpu: 'h100' } } });
  await s.registry.putService(spec({ name: 'needs-gpus', image: gpu, warm: 0, resources: { memoryMb: 0, cpus: 0, gpus: 2 } }));
  await s.registry.putService(spec({ warm: 0 }));
  await until(() => s.hostImages()[IMAGE]?.state === 'present', 'the image of the service this host may run');
  t.equal(s.hostImages()[other], undefined, 'no pull for a service placed on hosts labelled otherwise');
  t.equal(s.hostImages()[gpu], undefined, 'no pull for a service needing more GPUs than the host has');
  t.equal(s.runtime.calls.pull, 1);
});

t.test('a service changed during a long pull: the waiting instances go at once, the unused pull stops', async (t) => {
  const s = await setup(t);
  s.runtime.pullScript.set(IMAGE, { gate: new Promise(() => undefined) }); // a pull that never ends by itself
  await s.registry.putService(spec({ warm: 2 }));
  await until(() => s.instances().filter((i) => i.state === 'pulling').length === 2, 'two instances pulling');
  const old = new Set(s.instances().map((i) => i.id));
  // A new image the host has: the warm slots must not wait for the old pull.
  await s.registry.putService(spec({ warm: 2, image: 'warmpool/chatbot-demo' }));
  await until(() => s.instances().filter((i) => !old.has(i.id) && i.state === 'booting' && i.address).length === 2, 'the new spec boots at once');
  t.notOk(s.instances().some((i) => old.has(i.id)), 'the instances that waited for the old image are gone');
  await until(() => s.hostImages()[IMAGE] === undefined, 'the old image leaves the host record (its pull stopped)');
  t.same(s.agent.status().imageBackoff, {}, 'a pull stopped on purpose charges no backoff');
  t.equal(s.instances().filter((i) => i.state === 'failed').length, 0, 'and fails nothing');
});
