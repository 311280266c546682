// The agent's GPU allocation and host grants against a fake engine and the in-memory
// registry: exclusive devices per instance, the device request on the container, the host
// record's inventory, the allocation rebuilt after a restart from the containers alone, and
// secret files read at creation (a missing one fails the instance naming the file, never the value).
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryKvStore, Registry, type ServiceSpec } from '@warmpool/registry';
import { startAgent, type AgentHandle, type AgentOptions } from '../src/agent.js';
import { FakeRuntime } from './fake-runtime.js';

const PREFIX = '/unit-gpu/';
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'vllm', image: 'img', containerPort: 8000, warm: 2, maxPerHost: 10, bootTimeoutSec: 60,
  readiness: { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: {}, resources: { memoryMb: 0, cpus: 0, gpus: 1 }, ...over,
});

async function until(fn: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(t: Test) {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: PREFIX });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-agent-gpu-'));
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _e, cb) { logLines.push(String(chunk)); cb(); } }));
  const agents: AgentHandle[] = [];
  const start = async (over: Partial<AgentOptions> = {}): Promise<AgentHandle> => {
    const a = await startAgent({
      store, prefix: PREFIX, runtime, hostId: 'g1', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
      gpus: [{ id: '0' }, { id: '1' }, { id: '2', name: 'H100' }], logger,
      timing: { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 5_000, backoffMaxMs: 10_000, dockerRetryMs: 20 }, ...over,
    });
    agents.push(a);
    return a;
  };
  t.teardown(async () => {
    for (const a of agents) await a.close();
    await registry.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const apps = () => runtime.byRole('app');
  return { store, registry, cache, runtime, dir, start, apps, logLines, instances: () => [...cache.instances.values()].map((v) => v.value) };
}

t.test('exclusive GPUs per instance, published inventory, allocation rebuilt after a restart', async (t) => {
  const s = await setup(t);
  const first = await s.start();
  await until(() => s.cache.hosts.has('g1'), 'host record');
  t.match(s.cache.hosts.get('g1')!.value, { capacity: { gpus: 3 }, gpus: [{ id: '0' }, { id: '1' }, { id: '2', name: 'H100' }] }, 'inventory in the host record');
  await s.registry.putService(spec({ warm: 2 }));
  await until(() => s.apps().length === 2 && s.instances().filter((i) => i.gpus).length === 2, 'two instances');
  const given = s.apps().map((c) => c.spec.gpuDeviceIds ?? []);
  t.same(given.map((g) => g.length), [1, 1]);
  t.not(given[0]![0], given[1]![0], 'never one GPU for two instances');
  t.same(s.instances().map((i) => i.gpus).flat().sort(), given.flat().sort(), 'records name the GPUs');

  // Restart: the new agent knows nothing but the containers; their GPUs stay theirs.
  await first.close();
  const second = await s.start();
  await until(() => second.status().instances.length === 2, 'adopted');
  t.same(second.status().instances.map((i) => i.gpus).flat().sort(), given.flat().sort(), 'allocation rebuilt from the containers');
  await s.registry.putService(spec({ warm: 4 }));
  await until(() => s.apps().length === 3, 'a third instance on the last free GPU');
  const third = s.apps().map((c) => c.spec.gpuDeviceIds![0]!).filter((g) => !given.flat().includes(g));
  t.same(third, ['0', '1', '2'].filter((g) => !given.flat().includes(g)), 'the free GPU');
  await second.resync();
  await new Promise((r) => setImmediate(r));
  t.equal(s.apps().length, 3, 'no fourth: no GPU left, the slot stays for another host');
  t.equal(s.cache.slots.size, 3, 'three slots held, the fourth free');

  // Fewer instances wanted: one goes, its GPU is free and given to the next.
  await s.registry.putService(spec({ warm: 2 }));
  await until(() => s.apps().length === 2, 'one retired');
  await s.registry.putService(spec({ warm: 3, resources: { memoryMb: 0, cpus: 0, gpus: 1 } }));
  await until(() => s.apps().length === 3, 'its GPU given again');
  t.same(s.apps().map((c) => c.spec.gpuDeviceIds![0]).sort(), ['0', '1', '2']);
});

t.test('secret files: read when the container is created; a missing one fails the instance naming the file, never the value', async (t) => {
  const s = await setup(t);
  const secretDir = path.join(s.dir, 'secrets');
  const VALUE = 'hf_vErYsEcReTtOkEn';
  await import('node:fs').then((fs) => fs.mkdirSync(secretDir));
  writeFileSync(path.join(secretDir, 'hf_token'), `${VALUE}\n`);
  await s.start({ allow: { hostPaths: [], ipcHost: false, secretDirs: [secretDir], volumes: [] } });
  await s.registry.putService(spec({ warm: 1, resources: { memoryMb: 0, cpus: 0, gpus: 0 }, secretEnv: { HF_TOKEN: path.join(secretDir, 'hf_token') } }));
  await until(() => s.apps().length === 1, 'created');
  t.equal(s.apps()[0]!.spec.env.HF_TOKEN, VALUE, 'the value is in the container\'s env');
  const stored = JSON.stringify((await s.store.list(PREFIX)).entries);
  t.notMatch(stored, VALUE, 'never in the registry');

  const missing = path.join(secretDir, 'ngc_api_key');
  await s.registry.putService(spec({ name: 'nim', warm: 1, resources: { memoryMb: 0, cpus: 0, gpus: 0 }, secretEnv: { NGC_API_KEY: missing } }));
  await until(() => s.instances().some((i) => i.service === 'nim' && i.state === 'failed'), 'failed record');
  const failed = s.instances().find((i) => i.service === 'nim' && i.state === 'failed')!;
  t.match(failed.reason, `secretEnv.NGC_API_KEY: cannot read the secret file ${missing} on this host (ENOENT)`);
  t.notOk(s.apps().some((c) => c.spec.labels['warmpool.service'] === 'nim'), 'no container created');
  const hostPath = spec({ name: 'mounts', warm: 1, resources: { memoryMb: 0, cpus: 0, gpus: 0 }, volumes: [{ source: '/', target: '/host', readOnly: false }] });
  await s.registry.putService(hostPath);
  await until(() => s.instances().some((i) => i.service === 'mounts' && i.state === 'failed'), 'host path refused');
  t.match(s.instances().find((i) => i.service === 'mounts')!.reason, /volumes\[0\]: host path \/ is not allowed on this host/);
  t.notMatch(s.logLines.join(''), VALUE, 'never in the logs');
});
