import t from 'tap';
import type { ServiceSpec } from '@warmpool/registry';
import { appContainerSpec, sidecarContainerSpec, specHash, type PodInput } from '../src/container-spec.js';
import { dockerCreateBody } from '../src/docker-create-body.js';
import { clusterFromPrefix, containerName } from '../src/labels.js';

const spec: ServiceSpec = {
  name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm: 2, maxPerHost: 4, bootTimeoutSec: 30,
  readiness: { path: '/ready', expectStatus: 204, intervalMs: 250, failureThreshold: 2 },
  session: { idleTimeoutSec: 60, maxLifetimeSec: 600 }, env: { MODEL: 'x' }, resources: { memoryMb: 512, cpus: 1.5 },
};
const pod: PodInput = {
  cluster: 'warmpool', hostId: 'h1', instanceId: 'chat-abc', slot: 1, spec, publishIp: '127.0.0.1', sidecarImage: 'warmpool/sidecar',
  sidecarPort: 9000, runDir: '/run/warmpool', instanceKey: 'k',
};

t.test('app container: env, limits, labels, in its sidecar\'s network namespace, nothing published', async (t) => {
  const a = appContainerSpec(pod, 'sidecarid');
  t.same(a.env, { HOST: '127.0.0.1', MODEL: 'x', INSTANCE_ID: 'chat-abc', PORT: '8000' });
  t.equal(a.memoryBytes, 512 * 1024 * 1024);
  t.equal(a.nanoCpus, 1.5e9);
  t.equal(a.networkOfContainer, 'sidecarid');
  t.equal(a.publish, undefined, 'the app\'s port is never published');
  t.match(a.labels, { 'warmpool.cluster': 'warmpool', 'warmpool.service': 'chat', 'warmpool.instance': 'chat-abc', 'warmpool.host': 'h1', 'warmpool.role': 'app', 'warmpool.slot': '1' });
});

t.test('sidecar container: owns the pod\'s network namespace, publishes its port, run dir mounted, probe settings from the spec', async (t) => {
  const s = sidecarContainerSpec(pod);
  t.equal(s.networkOfContainer, undefined);
  t.same(s.publish, { containerPort: 9000, hostIp: '127.0.0.1' });
  t.equal(sidecarContainerSpec({ ...pod, sidecarPort: 8000 }).publish?.containerPort, 8001, 'never the app\'s own port');
  t.same(s.binds, { '/run/warmpool': '/run/warmpool' });
  t.match(s.env, {
    WARMPOOL_INSTANCE_ID: 'chat-abc', WARMPOOL_INSTANCE_KEY: 'k', WARMPOOL_APP_PORT: '8000', WARMPOOL_LISTEN_PORT: '9000', WARMPOOL_READY_PATH: '/ready',
    WARMPOOL_READY_STATUS: '204', WARMPOOL_PROBE_INTERVAL_MS: '250', WARMPOOL_BOOT_TIMEOUT_SEC: '30', WARMPOOL_FAILURE_THRESHOLD: '2',
    WARMPOOL_AGENT_SOCKET: '/run/warmpool/agent.sock',
  });
  // The sidecar's boot clock starts with its own process (the agent takes the app's start
  // time from the engine): no start time from before the start request; its boot timeout
  // allows for the engine calls between its start and the app's.
  t.equal(s.env.WARMPOOL_STARTED_AT, undefined);
  t.equal(sidecarContainerSpec({ ...pod, startSlackSec: 60 }).env.WARMPOOL_BOOT_TIMEOUT_SEC, '90');
  t.equal(s.env.WARMPOOL_WARMUP, undefined, 'no warm-up unless the spec asks');
  t.equal(s.env.WARMPOOL_LIVE_PATH, undefined, 'liveness defaults to the readiness probe (the sidecar\'s own defaults)');
  t.equal(s.labels['warmpool.role'], 'sidecar');
});

t.test('sidecar container: liveness, probe timeout and warm-up from the spec', async (t) => {
  const s = sidecarContainerSpec({
    ...pod, spec: {
      ...pod.spec, readiness: { ...pod.spec.readiness, timeoutMs: 700 },
      liveness: { path: '/v2/health/live', expectStatus: 200, intervalMs: 5000, timeoutMs: 10_000, failureThreshold: 4 },
      warmup: [
        { method: 'POST', path: '/api/generate', body: { model: 'm', prompt: 'hi' }, timeoutSec: 90, expectStatus: 200 },
        { method: 'GET', path: '/warm', headers: { 'x-a': 'b' }, timeoutSec: 1.5, expectStatus: 204 },
      ],
    },
  });
  t.match(s.env, {
    WARMPOOL_PROBE_TIMEOUT_MS: '700', WARMPOOL_LIVE_PATH: '/v2/health/live', WARMPOOL_LIVE_TIMEOUT_MS: '10000',
    WARMPOOL_LIVE_INTERVAL_MS: '5000', WARMPOOL_LIVE_FAILURE_THRESHOLD: '4', WARMPOOL_LIVE_STATUS: '200',
  });
  t.same(JSON.parse(s.env.WARMPOOL_WARMUP!), [
    { method: 'POST', path: '/api/generate', headers: { 'content-type': 'application/json' }, timeoutMs: 90_000, expectStatus: 200, body: '{"model":"m","prompt":"hi"}' },
    { method: 'GET', path: '/warm', headers: { 'x-a': 'b' }, timeoutMs: 1500, expectStatus: 204 },
  ]);
  t.equal(specHash(spec), specHash({ ...spec, warmup: [] }), 'an empty warm-up list changes nothing');
  t.not(specHash(spec), specHash({ ...spec, warmup: [{ method: 'GET', path: '/', timeoutSec: 1, expectStatus: 200 }] }));
});

t.test('spec hash: container-relevant fields only', async (t) => {
  t.equal(specHash(spec), specHash({ ...spec, warm: 9, maxPerHost: 1, session: { idleTimeoutSec: 1, maxLifetimeSec: 2 } }));
  t.not(specHash(spec), specHash({ ...spec, image: 'other' }));
  t.equal(specHash({ ...spec, env: { A: '1', B: '2' } }), specHash({ ...spec, env: { B: '2', A: '1' } }), 'key order does not matter');
});

t.test('cluster names and container names', async (t) => {
  t.equal(clusterFromPrefix('/warmpool/'), 'warmpool');
  t.equal(clusterFromPrefix('/warmpool-test/t1a2b/'), 'warmpool-test.t1a2b');
  t.equal(containerName('warmpool', 'chat-abc', 'app'), 'wp.warmpool.chat-abc.app');
  t.match(containerName('c', 'x'.repeat(300), 'sidecar'), /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/);
});

t.test('model-server options: command, entrypoint, user, shm, ipc, ulimits, GPUs, granted volumes and secrets', async (t) => {
  const full: ServiceSpec = {
    ...spec, command: ['--model', 'm'], entrypoint: ['python3', '-m', 'srv'], user: '1000:1000', shmSizeMb: 1024, ipc: 'host',
    ulimits: { memlock: { soft: -1, hard: -1 }, stack: { soft: 67108864, hard: 67108864 } }, secretEnv: { HF_TOKEN: '/etc/warmpool/secrets/hf' },
    volumes: [{ source: '/data/models', target: '/models', readOnly: true }], resources: { memoryMb: 0, cpus: 0, gpus: 2 },
  };
  const a = appContainerSpec({ ...pod, spec: full, gpus: ['1', '2'], grant: { volumes: full.volumes!, secretEnv: { HF_TOKEN: 'tok' } } });
  t.equal(a.env.HF_TOKEN, 'tok', 'the secret value, read by the agent, goes into the container env');
  t.equal(a.labels['warmpool.gpus'], '1,2', 'the allocation is on the container (rebuilt from it on adoption)');
  const body = dockerCreateBody(a);
  t.same(body.Cmd, ['--model', 'm']);
  t.same(body.Entrypoint, ['python3', '-m', 'srv']);
  t.equal(body.User, '1000:1000');
  t.match(body.HostConfig, {
    ShmSize: 1024 * 1024 * 1024, IpcMode: 'host', Binds: ['/data/models:/models:ro'],
    Ulimits: [{ Name: 'memlock', Soft: -1, Hard: -1 }, { Name: 'stack', Soft: 67108864, Hard: 67108864 }],
  });
  t.same(body.HostConfig.DeviceRequests, [{ Driver: '', Count: 0, DeviceIDs: ['1', '2'], Capabilities: [['gpu']], Options: {} }], 'what --gpus \'"device=1,2"\' sends');
  const bare = dockerCreateBody(appContainerSpec({ ...pod, spec: { ...full, volumes: [], secretEnv: {} } }));
  t.notOk(bare.HostConfig.DeviceRequests, 'no GPUs assigned, no device request');
  t.notOk(bare.HostConfig.Binds, 'volumes only from the host\'s grant');
  t.notOk('HF_TOKEN' in appContainerSpec({ ...pod, spec: full }).env, 'no grant, no secret');
});

t.test('spec hash: unchanged for specs without the container options, changed by any of them', async (t) => {
  const withDefaults: ServiceSpec = { ...spec, resources: { ...spec.resources, gpus: 0 }, volumes: [], ulimits: {}, secretEnv: {}, placement: { hostLabels: { a: 'b' } } };
  t.equal(specHash(withDefaults), specHash(spec), 'defaults (and placement) do not replace running instances');
  for (const over of [{ command: ['x'] }, { shmSizeMb: 1 }, { ipc: 'host' as const }, { user: '1' }, { secretEnv: { A: '/a' } }, { resources: { ...spec.resources, gpus: 1 } }]) {
    t.not(specHash({ ...spec, ...over }), specHash(spec), JSON.stringify(over));
  }
});
