// Regression (break-it pass): a warm-up that needs an auth header (a model server started
// with an API key) forced the operator to store the key in the registry, which every router
// reads. `warmup[].secretHeaders` takes the value from a file under the agent's
// allow.secretDirs, like secretEnv: here one key file gives the app its key (secretEnv) and
// the warm-up its `Authorization: Bearer <key>`. The app answers the warm-up 200 only with
// that header, so ready proves the value arrived; the value is in the sidecar's env on this
// host and nowhere else (registry, agent log, sidecar log), and a missing file fails the
// instance with a reason naming the file, shown by `warmpool status`.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ServiceSpec } from '@warmpool/registry';
import { eventually, infraSkip, repoRoot } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

const exec = promisify(execFile);
const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

/** An app (node from the demo image) that needs `Authorization: Bearer $API_KEY` on POST /warm. */
const APP = `const want = 'Bearer ' + process.env.API_KEY;
require('http').createServer((q, s) => {
  if (q.url === '/health') return s.end('ok');
  if (q.url === '/warm') { s.statusCode = q.headers.authorization === want ? 200 : 401; return s.end(); }
  s.statusCode = 404; s.end();
}).listen(Number(process.env.PORT), '0.0.0.0');`;

function keyedSpec(name: string, keyFile: string, headerFile: string): ServiceSpec {
  return chatSpec({
    name, warm: 1, entrypoint: ['/usr/bin/node', '-e', APP], secretEnv: { API_KEY: keyFile },
    warmup: [{
      method: 'POST', path: '/warm', timeoutSec: 10, expectStatus: 200,
      secretHeaders: { Authorization: { file: headerFile, prefix: 'Bearer ' } },
    }],
  });
}

t.test('warm-up headers from secret files reach the app through the sidecar and nothing else', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const secrets = path.join(h.runDir(), 'secrets');
  mkdirSync(secrets);
  const KEY = `sk-${h.id}-apikey`;
  const keyFile = path.join(secrets, 'api_key');
  writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  const wrongFile = path.join(secrets, 'wrong_key');
  writeFileSync(wrongFile, 'sk-wrong\n', { mode: 0o600 });
  const missing = path.join(secrets, 'no_such_key');
  const agent = h.spawnAgent('hdr', { extra: ['--secret-dir', secrets] });

  await h.putService(keyedSpec('keyed', keyFile, keyFile));
  await h.putService(keyedSpec('wrong', keyFile, wrongFile));
  await h.putService(keyedSpec('nokey', keyFile, missing));
  // Written straight into the registry (no `warmpool apply`): the key as a plain header.
  const RAW = `sk-${h.id}-rawkey`;
  await h.putService(chatSpec({ name: 'rawkey', warm: 1, warmup: [{ method: 'POST', path: '/warm', timeoutSec: 10, expectStatus: 200, headers: { Authorization: `Bearer ${RAW}` } }] }));

  const [inst] = await h.waitReady(1, { service: 'keyed', timeoutMs: 60_000 });
  t.ok(inst, 'the warm-up passed: the app saw Authorization: Bearer <key>');
  await eventually(() => {
    for (const s of ['wrong', 'nokey', 'rawkey']) if (!h.instances(s).some((i) => i.state === 'failed')) throw new Error(`${s} not failed yet`);
  }, { timeoutMs: 30_000, what: 'failed records' });
  t.match(h.instances('wrong').find((i) => i.state === 'failed'), { reason: /POST \/warm answered 401, expected 200/ }, 'the app checks the header');

  const out = (await exec(process.execPath, [bin, 'status'], { env: { ...process.env, WARMPOOL_ETCD: h.etcd.endpoints.join(','), WARMPOOL_PREFIX: h.prefix }, timeout: 30_000 })).stdout;
  t.match(out, new RegExp(`nokey\\s+\\S+\\s+hdr\\s+launch failed: warmup\\[0\\]\\.secretHeaders\\.Authorization: cannot read the secret file ${missing} on this host \\(ENOENT\\)`));
  t.notOk((await h.containers({ 'warmpool.service': 'nokey' })).length, 'no container for a refused instance');
  t.match(out, /rawkey\s+\S+\s+hdr\s+launch failed: warmup\[0\]\.headers\.Authorization: Authorization carries a credential/, 'a credential in plain headers, written raw, is refused by the agent');
  t.notMatch(out, RAW, '(its value is not in the reason)');
  t.notOk((await h.containers({ 'warmpool.service': 'rawkey' })).length, 'no container started with it');

  // Where the value is: only the env of this host's sidecar container, handed over by the agent.
  const [sidecarId] = await h.containers({ 'warmpool.instance': inst!.id, 'warmpool.role': 'sidecar' });
  const env = JSON.parse(await docker('inspect', '-f', '{{json .Config.Env}}', sidecarId!)) as string[];
  t.ok(env.some((e) => e.startsWith('WARMPOOL_WARMUP=') && e.includes(`"Authorization":"Bearer ${KEY}"`)), 'in the sidecar\'s warm-up settings');
  const registryDump = await h.etcd.etcdctl('get', h.prefix, '--prefix');
  t.notMatch(registryDump, KEY, 'never in the registry');
  t.match(registryDump, keyFile, '(the path is)');
  t.notMatch(agent.output(), KEY, 'never in the agent\'s log');
  t.notMatch(agent.output(), RAW, 'nor the raw-written value');
  const sidecarLog = await exec('docker', ['logs', sidecarId!], { timeout: 30_000 });
  t.match(sidecarLog.stdout + sidecarLog.stderr, /instance ready/, '(the sidecar logged its warm-up)');
  t.notMatch(sidecarLog.stdout + sidecarLog.stderr, KEY, 'never in the sidecar\'s log');
});
