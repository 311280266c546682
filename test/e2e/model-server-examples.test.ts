// docs/examples: every model-server services file passes `warmpool apply --dry-run`, turns
// into the Docker create request its documented `docker run` line stands for (device
// request, binds, shm, ipc, ulimits, command, user, env from secret files), and a real Docker
// engine creates (never starts: there is no GPU here) one container per example whose
// `docker inspect` shows the same configuration.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseServicesFile, type ServiceSpec } from '@warmpool/registry';
import { appContainerSpec, dockerCreateBody, DockerodeRuntime, grantHostOptions, plan } from '@warmpool/agent';
import { infraSkip, removeContainersByLabel, repoRoot, startEtcd, testRunId } from '../src/index.js';

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
  const allow = { hostPaths: [`${root}/var/lib/warmpool`], ipcHost: true, secretDirs: [secretDir] };
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
