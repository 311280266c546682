import t from 'tap';
import type { ServiceSpec } from '@warmpool/registry';
import { appContainerSpec, sidecarContainerSpec, specHash, type PodInput } from '../src/container-spec.js';
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

t.test('app container: env, limits, labels, only the sidecar port published', async (t) => {
  const a = appContainerSpec(pod);
  t.same(a.env, { HOST: '127.0.0.1', MODEL: 'x', INSTANCE_ID: 'chat-abc', PORT: '8000' });
  t.equal(a.memoryBytes, 512 * 1024 * 1024);
  t.equal(a.nanoCpus, 1.5e9);
  t.same(a.publish, { containerPort: 9000, hostIp: '127.0.0.1' });
  t.match(a.labels, { 'warmpool.cluster': 'warmpool', 'warmpool.service': 'chat', 'warmpool.instance': 'chat-abc', 'warmpool.host': 'h1', 'warmpool.role': 'app', 'warmpool.slot': '1' });
  t.equal(appContainerSpec({ ...pod, sidecarPort: 8000 }).publish?.containerPort, 8001, 'never the app\'s own port');
});

t.test('sidecar container: app network namespace, run dir mounted, probe settings from the spec', async (t) => {
  const s = sidecarContainerSpec(pod, 'appid');
  t.equal(s.networkOfContainer, 'appid');
  t.same(s.binds, { '/run/warmpool': '/run/warmpool' });
  t.match(s.env, {
    WARMPOOL_INSTANCE_ID: 'chat-abc', WARMPOOL_INSTANCE_KEY: 'k', WARMPOOL_APP_PORT: '8000', WARMPOOL_LISTEN_PORT: '9000', WARMPOOL_READY_PATH: '/ready',
    WARMPOOL_READY_STATUS: '204', WARMPOOL_PROBE_INTERVAL_MS: '250', WARMPOOL_BOOT_TIMEOUT_SEC: '30', WARMPOOL_FAILURE_THRESHOLD: '2',
    WARMPOOL_AGENT_SOCKET: '/run/warmpool/agent.sock',
  });
  // The sidecar's boot clock starts with its own process, after the app container started
  // (the agent takes the app's start time from the engine): no start time from before the start request.
  t.equal(s.env.WARMPOOL_STARTED_AT, undefined);
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
  }, 'appid');
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
