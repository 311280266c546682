// `warmpool agent` as a process with its own allow-list and a configured GPU inventory: the
// host record publishes the GPUs, a secret file's value reaches the container and nothing
// else (registry, agent log), a missing secret file and a host path outside the allowed
// prefixes fail their instances with reasons `warmpool status` shows, naming the file.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually, infraSkip, repoRoot } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

const exec = promisify(execFile);
const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

t.test('host grants and GPU inventory through the agent process and warmpool status', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const dir = h.runDir();
  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets);
  const VALUE = `tok-${h.id}-value`;
  writeFileSync(path.join(secrets, 'hf_token'), `${VALUE}\n`, { mode: 0o600 });
  const agent = h.spawnAgent('grants', { extra: ['--gpus', '0,1', '--gpu-detect', 'false', '--secret-dir', secrets, '--allow-host-path', path.join(dir, 'models'), '--label', 'gpu=h100'] });

  await h.putService(chatSpec({ warm: 1, secretEnv: { HF_TOKEN: path.join(secrets, 'hf_token') }, placement: { hostLabels: { gpu: 'h100' } } }));
  const missing = path.join(secrets, 'ngc_api_key');
  await h.putService(chatSpec({ name: 'nim', warm: 1, secretEnv: { NGC_API_KEY: missing } }));
  await h.putService(chatSpec({ name: 'rootfs', warm: 1, volumes: [{ source: '/etc', target: '/host-etc', readOnly: true }] }));

  const [inst] = await h.waitReady(1, { timeoutMs: 60_000 });
  const [appId] = await h.containers({ 'warmpool.instance': inst!.id, 'warmpool.role': 'app' });
  const env = JSON.parse(await docker('inspect', '-f', '{{json .Config.Env}}', appId!)) as string[];
  t.ok(env.includes(`HF_TOKEN=${VALUE}`), 'the secret value is in the app container\'s env');

  await eventually(() => {
    for (const s of ['nim', 'rootfs']) if (!h.instances(s).some((i) => i.state === 'failed')) throw new Error(`${s} not failed yet`);
  }, { timeoutMs: 30_000, what: 'failed records' });
  const out = (await exec(process.execPath, [bin, 'status'], { env: { ...process.env, WARMPOOL_ETCD: h.etcd.endpoints.join(','), WARMPOOL_PREFIX: h.prefix }, timeout: 30_000 })).stdout;
  t.match(out, /grants\s+127\.0\.0\.1\s+\d+\/10\s+0\/2\s+active/, 'the host\'s GPUs used/free');
  t.match(out, new RegExp(`nim\\s+\\S+\\s+grants\\s+launch failed: secretEnv\\.NGC_API_KEY: cannot read the secret file ${missing} on this host \\(ENOENT\\)`));
  t.match(out, /rootfs\s+\S+\s+grants\s+launch failed: volumes\[0\]: host path \/etc is not allowed on this host/);
  t.match(h.cache.hosts.get('grants')?.value, { capacity: { gpus: 2 }, gpus: [{ id: '0' }, { id: '1' }], labels: { gpu: 'h100' } });

  const registryDump = await h.etcd.etcdctl('get', h.prefix, '--prefix');
  t.notMatch(registryDump, VALUE, 'never in the registry');
  t.match(registryDump, path.join(secrets, 'hf_token'), '(the path is)');
  t.notMatch(agent.output(), VALUE, 'never in the agent\'s log');
  t.notOk((await h.containers({ 'warmpool.service': 'nim' })).length, 'no container for a refused instance');
});
