// docs/examples: every model-server services file passes `warmpool apply --dry-run`, turns
// into the Docker create request its documented `docker run` line stands for (device
// request, binds, shm, ipc, ulimits, command, user, env from secret files), and a real Docker
// engine creates (never starts: there is no GPU here) one container per example whose
// `docker inspect` shows the same configuration. The sidecar of each example gets the
// readiness, liveness and warm-up its server documents, and a real sidecar started from that
// env probes those paths and sends that warm-up request.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseServicesFile, type ServiceSpec } from '@warmpool/registry';
import { appContainerSpec, dockerCreateBody, DockerodeRuntime, grantHostOptions, plan, sidecarContainerSpec, type PodInput } from '@warmpool/agent';
import { SIDECAR_ENV as E, sidecarConfigFromEnv, startSidecar } from '@warmpool/sidecar';
import { eventually, infraSkip, removeContainersByLabel, repoRoot, startEtcd, testRunId } from '../src/index.js';

const exec = promisify(execFile);
const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');
const examplesDir = path.join(repoRoot, 'docs', 'examples');
const GiB = 1024 ** 3;

/** Per example: its documented `docker run` flags, as the Engine API receives them (host paths relative to the host root). */
const DOCUMENTED: Record<string, {
  service: string; cmd?: string[]; user?: string; binds: string[]; shm?: number; ipc?: string;
  ulimits?: { Name: string; Soft: number; Hard: number }[]; secrets: Record<string, string>; hostLabels?: Record<string, string>;
}> = {
  'vllm.yaml': {
    service: 'vllm', cmd: ['--model', 'mistralai/Mistral-7B-v0.1'], ipc: 'host', hostLabels: { gpu: 'h100' },
    binds: ['/var/lib/warmpool/hf-cache:/root/.cache/huggingface'], secrets: { HF_TOKEN: 'hf_token' },
  },
  'sglang.yaml': {
    service: 'sglang', ipc: 'host', shm: 32 * GiB, binds: ['/var/lib/warmpool/hf-cache:/root/.cache/huggingface'], secrets: { HF_TOKEN: 'hf_token' },
    cmd: ['python3', '-m', 'sglang.launch_server', '--model-path', 'meta-llama/Llama-3.1-8B-Instruct', '--host', '0.0.0.0', '--port', '30000'],
  },
  'llama-cpp-server.yaml': {
    service: 'llama-cpp', binds: ['/var/lib/warmpool/models:/models:ro'], secrets: {},
    cmd: ['-m', '/models/7B/ggml-model-q4_0.gguf', '--port', '8080', '--host', '0.0.0.0', '-n', '512', '--n-gpu-layers', '1'],
  },
  'ollama.yaml': { service: 'ollama', binds: ['ollama:/root/.ollama'], secrets: {} },
  'triton.yaml': {
    service: 'triton', cmd: ['tritonserver', '--model-repository=/models'], shm: GiB, binds: ['/var/lib/warmpool/model_repository:/models'], secrets: {},
    ulimits: [{ Name: 'memlock', Soft: -1, Hard: -1 }, { Name: 'stack', Soft: 67108864, Hard: 67108864 }],
  },
  'nim.yaml': {
    service: 'nim-llama', shm: 16 * GiB, user: '1000', binds: ['/var/lib/warmpool/nim-cache:/opt/nim/.cache'], secrets: { NGC_API_KEY: 'ngc_api_key' },
  },
};

function loadExample(file: string): ServiceSpec {
  const r = parseServicesFile(parseYaml(readFileSync(path.join(examplesDir, file), 'utf8')));
  if (!r.ok) throw new Error(`${file}: ${r.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return r.services[0]!;
}

/** The host paths of a spec moved under `root` (the test's own directory), named volumes suffixed with the run id. */
function onTestHost(spec: ServiceSpec, root: string, run: string): ServiceSpec {
  return {
    ...spec,
    volumes: (spec.volumes ?? []).map((v) => ({ ...v, source: v.source.startsWith('/') ? `${root}${v.source}` : `${v.source}-${run}` })),
    secretEnv: Object.fromEntries(Object.entries(spec.secretEnv ?? {}).map(([k, f]) => [k, `${root}${f}`])),
  };
}

t.test('every example passes warmpool apply --dry-run and writes nothing', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const env = { ...process.env, WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: `/examples-${testRunId()}/` };
  t.same(Object.keys(DOCUMENTED).sort(), (await import('node:fs')).readdirSync(examplesDir).filter((f) => f.endsWith('.yaml')).sort(), 'one check per example');
  for (const [file, doc] of Object.entries(DOCUMENTED)) {
    const { stdout } = await exec(process.execPath, [bin, 'apply', '--dry-run', '-f', path.join(examplesDir, file)], { env, timeout: 30_000 });
    t.equal(stdout.trim(), `${doc.service}: create (dry run)`, file);
  }
  t.equal((await etcd.etcdctl('get', env.WARMPOOL_PREFIX, '--prefix', '--keys-only')).trim(), '', 'a dry run writes nothing');
});

t.test('each example becomes its documented docker run flags, and a real engine creates it so', { skip: infraSkip('docker') }, async (t) => {
  const run = testRunId();
  const root = mkdtempSync(path.join(tmpdir(), 'wp-examples-'));
  const volumes = new Set<string>();
  t.teardown(async () => {
    await removeContainersByLabel('warmpool.cluster', run);
    for (const v of volumes) await exec('docker', ['volume', 'rm', v]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  const secretDir = path.join(root, 'etc/warmpool/secrets');
  mkdirSync(secretDir, { recursive: true });
  for (const f of ['hf_token', 'ngc_api_key']) writeFileSync(path.join(secretDir, f), `secret-of-${f}\n`);
  const allow = { hostPaths: [`${root}/var/lib/warmpool`], ipcHost: true, secretDirs: [secretDir], volumes: [`*-${run}`] };
  const runtime = new DockerodeRuntime();

  for (const [file, doc] of Object.entries(DOCUMENTED)) {
    const spec = onTestHost(loadExample(file), root, run);
    // The planner on a host with GPUs 0-3, GPU 0 taken by another instance: the next free one.
    const p = plan({
      now: 0, hostId: 'gpu-host', capacity: { instances: 8, memoryMb: 0 }, gpuInventory: ['0', '1', '2', '3'], hostLabels: { gpu: 'h100' },
      draining: false, services: new Map([[spec.name, { spec, hash: 'h' }]]),
      fleet: { slots: new Map(), claims: new Map(), sessionExpiry: new Map(), tombstones: new Set(), hosts: [], readyUnclaimed: new Map() },
      local: new Map([['other', {
        id: 'other', service: 'x', phase: 'ready', slot: null, slotSeen: false, specHash: '', memoryMb: 0, gpus: ['0'],
        createdAt: 0, startedAt: 0, launchedAt: 0, readyAt: 0, bootMs: 0,
      }]]),
      busy: new Set(), starting: new Set(), backoffUntil: new Map(), containers: undefined, timing: { spreadStepMs: 0, maxSpreadMs: 0, strayGraceMs: 0 },
    });
    const start = p.actions.find((a) => a.type === 'start');
    t.same(start && 'gpus' in start ? start.gpus : undefined, ['1'], `${file}: one GPU, exclusively`);
    // A named volume is granted only by the agent's allow.volumes: the example says so.
    for (const v of loadExample(file).volumes ?? []) {
      if (!v.source.startsWith('/')) t.match(readFileSync(path.join(examplesDir, file), 'utf8'), new RegExp(`^#\\s+allow: \\{.*volumes: \\[[^\\]]*\\b${v.source}\\b`, 'm'), `${file}: names the agent config allowing volume ${v.source}`);
    }
    const granted = grantHostOptions(spec, allow);
    if (!granted.ok) { t.fail(`${file}: ${granted.reason}`); continue; }
    const create = appContainerSpec({
      cluster: run, hostId: 'gpu-host', instanceId: `${spec.name}-x`, slot: 0, spec, publishIp: '127.0.0.1', sidecarImage: 'warmpool/sidecar',
      sidecarPort: 9000, runDir: '/run/warmpool', instanceKey: 'k', grant: granted.grant, gpus: ['1'],
    });
    const body = dockerCreateBody(create);
    const binds = doc.binds.map((b) => (b.startsWith('/') ? `${root}${b}` : b.replace(/^([^:]+)/, `$1-${run}`)));
    const expectedDevices = [{ Driver: '', Count: 0, DeviceIDs: ['1'], Capabilities: [['gpu']], Options: {} }];
    t.same(body.HostConfig.DeviceRequests, expectedDevices, `${file}: the device request of --gpus '"device=1"'`);
    t.same(body.HostConfig.Binds, binds, `${file}: -v`);
    t.equal(body.HostConfig.ShmSize, doc.shm, `${file}: --shm-size`);
    t.equal(body.HostConfig.IpcMode, doc.ipc, `${file}: --ipc`);
    t.same(body.HostConfig.Ulimits, doc.ulimits, `${file}: --ulimit`);
    t.same(body.Cmd, doc.cmd, `${file}: command`);
    t.equal(body.User, doc.user, `${file}: -u`);
    for (const [k, f] of Object.entries(doc.secrets)) t.ok(body.Env.includes(`${k}=secret-of-${f}`), `${file}: ${k} from its secret file`);

    // The real engine: same request, a local image in place of the model server's (no registry here).
    for (const v of spec.volumes ?? []) if (!v.source.startsWith('/')) volumes.add(v.source);
    const id = await runtime.create({ ...create, image: 'warmpool/chatbot-demo' });
    const [info] = JSON.parse((await exec('docker', ['inspect', id])).stdout) as {
      HostConfig: { DeviceRequests: unknown; Binds: string[] | null; ShmSize: number; IpcMode: string; Ulimits: unknown }; Config: { Cmd: string[] | null; User: string; Env: string[] };
      State: { Status: string };
    }[];
    t.equal(info!.State.Status, 'created', `${file}: created, never started`);
    t.match(info!.HostConfig.DeviceRequests, [{ Driver: '', Count: 0, DeviceIDs: ['1'], Capabilities: [['gpu']] }], `${file}: inspect DeviceRequests`);
    t.same(info!.HostConfig.Binds, binds, `${file}: inspect Binds`);
    if (doc.shm) t.equal(info!.HostConfig.ShmSize, doc.shm, `${file}: inspect ShmSize`);
    t.equal(info!.HostConfig.IpcMode, doc.ipc ?? 'private', `${file}: inspect IpcMode`);
    t.same(info!.HostConfig.Ulimits ?? undefined, doc.ulimits, `${file}: inspect Ulimits`);
    if (doc.cmd) t.same(info!.Config.Cmd, doc.cmd, `${file}: inspect Cmd`);
    t.equal(info!.Config.User, doc.user ?? '', `${file}: inspect User`);
    for (const [k, f] of Object.entries(doc.secrets)) t.ok(info!.Config.Env.includes(`${k}=secret-of-${f}`), `${file}: inspect Env ${k}`);
  }
});

/** The argument after `flag` in a command line. */
function argAfter(cmd: readonly string[] | undefined, flag: string): string | undefined {
  const i = (cmd ?? []).indexOf(flag);
  return i < 0 ? undefined : cmd![i + 1];
}

/**
 * Per example: the health endpoints its server documents (docs/model-servers.md), the least
 * liveness timeout a busy server needs, the least boot timeout a first model load needs, and
 * the warm-up request it takes: `model` is the name the server serves (from the command, the
 * image or the pull line of the file), `oneToken` the field that limits the answer to 1 token.
 */
const HEALTH: Record<string, {
  ready: string; live: string; minLiveTimeoutMs: number; minBootSec: number; appEnv?: Record<string, string>;
  warmup?: { path: string; model?: (s: ServiceSpec, text: string) => string | undefined; oneToken?: string; fields?: Record<string, unknown> };
}> = {
  // Refuses connections while loading; /health 200 (503 once the engine died), one endpoint.
  'vllm.yaml': {
    ready: '/health', live: '/health', minLiveTimeoutMs: 10_000, minBootSec: 1200,
    warmup: { path: '/v1/completions', model: (s) => argAfter(s.command, '--model'), oneToken: 'max_tokens' },
  },
  // /health 503 while starting; after ready it waits up to 20 s (its own health-check timeout) for a token.
  'sglang.yaml': {
    ready: '/health', live: '/health', minLiveTimeoutMs: 20_001, minBootSec: 1200,
    warmup: { path: '/v1/chat/completions', model: (s) => argAfter(s.command, '--model-path'), oneToken: 'max_tokens' },
  },
  // /health 503 "Loading model", then 200; native completion takes n_predict.
  'llama-cpp-server.yaml': {
    ready: '/health', live: '/health', minLiveTimeoutMs: 5000, minBootSec: 300,
    warmup: { path: '/completion', oneToken: 'n_predict' },
  },
  // GET / 200 at once; a model loads on the first /api/generate naming it (no prompt: load only).
  'ollama.yaml': {
    ready: '/', live: '/', minLiveTimeoutMs: 5000, minBootSec: 60, appEnv: { OLLAMA_KEEP_ALIVE: '-1' },
    warmup: { path: '/api/generate', model: (_s, text) => /ollama pull (\S+)/.exec(text)?.[1], fields: { keep_alive: -1 } },
  },
  // Separate live and ready endpoints; no generic warm-up (model_warmup lives in the model's config).
  'triton.yaml': { ready: '/v2/health/ready', live: '/v2/health/live', minLiveTimeoutMs: 5000, minBootSec: 600 },
  // Separate live and ready endpoints; the served name is the image's org/name.
  'nim.yaml': {
    ready: '/v1/health/ready', live: '/v1/health/live', minLiveTimeoutMs: 5000, minBootSec: 1200,
    warmup: { path: '/v1/chat/completions', model: (s) => /^nvcr\.io\/nim\/(.+):[^:]+$/.exec(s.image)?.[1], oneToken: 'max_tokens' },
  },
};

function podOf(spec: ServiceSpec): PodInput {
  return {
    cluster: 'c', hostId: 'gpu-host', instanceId: `${spec.name}-x`, slot: 0, spec, publishIp: '127.0.0.1', sidecarImage: 'warmpool/sidecar',
    sidecarPort: 9000, runDir: '/run/warmpool', instanceKey: 'k', gpus: ['1'], startSlackSec: 30,
  };
}

t.test('each example gives its sidecar the readiness, liveness and warm-up its server documents', async (t) => {
  t.same(Object.keys(HEALTH).sort(), Object.keys(DOCUMENTED).sort(), 'one check per example');
  for (const [file, doc] of Object.entries(HEALTH)) {
    const text = readFileSync(path.join(examplesDir, file), 'utf8');
    const spec = loadExample(file);
    const env = sidecarContainerSpec(podOf(spec)).env;
    t.equal(env[E.readyPath], doc.ready, `${file}: readiness path`);
    t.equal(env[E.readyStatus], '200', `${file}: ready is 200`);
    t.ok(Number(env[E.probeTimeoutMs]) >= 5000, `${file}: readiness timeout ${env[E.probeTimeoutMs]} ms, above the 2 s default`);
    t.equal(env[E.livePath], doc.live, `${file}: liveness path`);
    t.equal(env[E.liveStatus], '200', `${file}: live is 200`);
    t.ok(Number(env[E.liveTimeoutMs]) >= doc.minLiveTimeoutMs, `${file}: liveness timeout ${env[E.liveTimeoutMs]} ms >= ${doc.minLiveTimeoutMs}`);
    t.ok(spec.bootTimeoutSec >= doc.minBootSec, `${file}: boot timeout ${spec.bootTimeoutSec} s fits a first model load`);
    t.equal(env[E.bootTimeoutSec], String(spec.bootTimeoutSec + 30), `${file}: the sidecar's boot timeout`);
    for (const [k, v] of Object.entries(doc.appEnv ?? {})) t.equal(appContainerSpec(podOf(spec)).env[k], v, `${file}: app env ${k}`);

    // What the sidecar makes of that env: the same config it runs with.
    const cfg = sidecarConfigFromEnv(env);
    t.equal(cfg.liveness?.path, doc.live, `${file}: the sidecar reads the liveness path`);
    if (!doc.warmup) {
      t.equal(env[E.warmup], undefined, `${file}: no warm-up`);
      t.equal(cfg.warmup, undefined, `${file}: the sidecar sends none`);
      continue;
    }
    t.equal(cfg.warmup?.length, 1, `${file}: one warm-up request`);
    const w = cfg.warmup?.[0];
    if (!w) continue;
    t.match(w, { method: 'POST', path: doc.warmup.path, expectStatus: 200, headers: { 'content-type': 'application/json' } }, `${file}: warm-up request`);
    t.ok(w.timeoutMs >= 60_000, `${file}: warm-up timeout ${w.timeoutMs} ms`);
    const body = JSON.parse(w.body ?? 'null') as Record<string, unknown>;
    if (doc.warmup.model) {
      const served = doc.warmup.model(spec, text);
      t.ok(served, `${file}: the served model name is found`);
      t.equal(body.model, served, `${file}: the warm-up names the served model`);
    }
    if (doc.warmup.oneToken) t.equal(body[doc.warmup.oneToken], 1, `${file}: a 1-token answer (${doc.warmup.oneToken})`);
    if (doc.warmup.path === '/api/generate') t.equal(body.prompt, undefined, `${file}: no prompt: load the model only`);
    t.match(body, doc.warmup.fields ?? {}, `${file}: warm-up fields`);
  }
});

t.test('a real sidecar started from each example\'s env probes those paths and sends that warm-up', async (t) => {
  for (const [file, doc] of Object.entries(HEALTH)) {
    const spec = loadExample(file);
    const seen: { method: string; path: string; contentType?: string; body: string }[] = [];
    const app = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', path: req.url ?? '', body, ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}) });
        const known = [doc.ready, doc.live, doc.warmup?.path].includes(req.url);
        res.writeHead(known ? 200 : 404, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const env: Record<string, string> = {
      ...sidecarContainerSpec(podOf(spec)).env,
      [E.listenHost]: '127.0.0.1', [E.listenPort]: '0', [E.appPort]: String((app.address() as AddressInfo).port),
      [E.probeIntervalMs]: '50', [E.liveIntervalMs]: '50',
    };
    delete env[E.agentSocket];
    const sc = await startSidecar(sidecarConfigFromEnv(env));
    try {
      await eventually(() => {
        if (sc.status().state !== 'ready') throw new Error(`${file}: sidecar ${sc.status().state} ${sc.status().reason ?? ''}`);
        const afterWarmup = seen.slice(seen.findIndex((r) => r.method === 'POST') + 1);
        if (!afterWarmup.some((r) => r.method === 'GET' && r.path === doc.live)) throw new Error(`${file}: no liveness probe yet`);
      }, { timeoutMs: 10_000 });
      t.equal(seen[0]?.path, doc.ready, `${file}: first probe on the readiness path`);
      const posts = seen.filter((r) => r.method !== 'GET');
      if (!doc.warmup) { t.same(posts, [], `${file}: no warm-up request`); continue; }
      t.equal(posts.length, 1, `${file}: one warm-up request`);
      const sent = posts[0];
      if (!sent) continue;
      t.match(sent, { method: 'POST', path: doc.warmup.path, contentType: 'application/json' }, `${file}: warm-up as sent`);
      t.same(JSON.parse(sent.body), spec.warmup?.[0]?.body, `${file}: the warm-up body of the example`);
      t.ok(seen.indexOf(sent) > seen.findIndex((r) => r.path === doc.ready), `${file}: after readiness`);
    } finally {
      await sc.close();
      await new Promise<void>((resolve) => app.close(() => resolve()));
    }
  }
});
