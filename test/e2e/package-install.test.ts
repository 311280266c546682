// The install of docs/operations.md on a machine with no clone: the packed `warmpool`
// tarball installed into a scratch prefix (npm install -g --prefix, offline: it has no
// dependencies), then `warmpool agent` and `warmpool router` run from it against a real
// etcd. The agent builds its sidecar image from the package (a name private to this
// test), an instance of the demo chatbot boots behind it, and a session is served.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { eventually, infraSkip, killOnExit, listContainersByLabel, removeContainersByLabel, repoRoot, startEtcd, testRunId } from '../src/index.js';
import { requireImages } from './fixtures/agent-harness.js';

const exec = promisify(execFile);

function daemon(bin: string, args: string[]): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const proc = killOnExit(spawn(bin, args, { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WARMPOOL_LOG_LEVEL: 'info' } }));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, out: () => out, exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))) };
}

t.test('the packed warmpool package installs with npm -g and runs agent and router', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const id = testRunId();
  const scratch = mkdtempSync(path.join(tmpdir(), 'warmpool-pkg-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  const built = await exec('bash', [path.join(repoRoot, 'deploy/package/build.sh'), path.join(scratch, 'out')], { cwd: repoRoot });
  const tarball = built.stdout.trim().split('\n').pop()!;
  t.match(tarball, /warmpool-\d+\.\d+\.\d+\.tgz$/, `packed ${tarball}`);
  const prefix = path.join(scratch, 'prefix');
  await exec('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball], { cwd: scratch });
  const warmpool = path.join(prefix, 'bin', 'warmpool');
  const help = await exec(warmpool, ['--help'], { cwd: scratch });
  t.match(help.stdout, /Usage: warmpool/, 'the warmpool command is on the prefix\'s PATH');
  const version = JSON.parse(readFileSync(path.join(repoRoot, 'cli/package.json'), 'utf8')) as { version: string };
  t.equal((await exec(warmpool, ['--version'], { cwd: scratch })).stdout.trim(), version.version, '--version from the package (one bundle)');
  t.ok(existsSync(path.join(prefix, 'lib/node_modules/warmpool/systemd/warmpool-agent.service')), 'the systemd units come with it');

  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const cluster = `wp-pkg-${id}`;
  const sidecarImage = `warmpool-test/sidecar-pkg-${id}`;
  const regArgs = ['--etcd', etcd.endpoints.join(','), '--prefix', `/pkg-${id}/`];
  t.teardown(async () => {
    await removeContainersByLabel('warmpool.cluster', cluster);
    await exec('docker', ['rmi', '-f', sidecarImage]).catch(() => undefined);
  });
  const services = path.join(scratch, 'services.yaml');
  writeFileSync(services, 'services:\n  - name: chatbot\n    image: warmpool/chatbot-demo\n    warm: 1\n    env: { BOOT_SECONDS: "1" }\n    readiness: { intervalMs: 200 }\n');
  const applied = await exec(warmpool, ['apply', '-f', services, ...regArgs], { cwd: scratch });
  t.match(applied.stdout, /chatbot: create/);

  const router = daemon(warmpool, ['router', ...regArgs, '--listen', '127.0.0.1', '--port', '0', '--log-level', 'warn']);
  const agent = daemon(warmpool, ['agent', ...regArgs, '--host-id', `pkg-${id}`, '--address', '127.0.0.1', '--run-dir', path.join(scratch, 'run'),
    '--cluster', cluster, '--sidecar-image', sidecarImage, '--instances', '2', '--lease-ttl', '5']);
  t.teardown(async () => {
    for (const d of [agent, router]) {
      if (d.proc.exitCode === null && d.proc.signalCode === null) {
        d.proc.kill('SIGTERM');
        const timer = setTimeout(() => d.proc.kill('SIGKILL'), 15_000);
        await d.exited;
        clearTimeout(timer);
      }
    }
  });
  const url = await eventually(() => /"msg":"router listening","url":"([^"]+)"/.exec(router.out())?.[1] ?? false, { timeoutMs: 30_000, what: 'router listening' });
  t.equal((await fetch(`${url}/healthz`)).status, 200, 'the router from the package answers');
  const chart = await fetch(`${url}/dashboard/uplot.min.js`);
  t.equal(chart.status, 200, 'the dashboard\'s charting library comes with the package');
  t.ok((await chart.text()).includes('uPlot'), 'and is the library');

  // The image did not exist: the agent builds it from the package, then boots an instance.
  await eventually(() => /built the sidecar image/.test(agent.out()) || (agent.proc.exitCode !== null ? Promise.reject(new Error(agent.out())) : false), { timeoutMs: 120_000, what: 'sidecar image built by the agent' });
  const inspected = await exec('docker', ['image', 'inspect', '-f', '{{ index .Config.Labels "warmpool.package-hash" }}', sidecarImage]);
  t.match(inspected.stdout.trim(), /^[0-9a-f]{16}$/, 'the image is labelled with its inputs\' hash');
  const created = await eventually(async () => {
    const r = await fetch(`${url}/v1/sessions?wait=5`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
    return r.status === 201 ? ((await r.json()) as { sessionId: string }) : false;
  }, { timeoutMs: 120_000, intervalMs: 500, what: 'a session through the packaged router and agent' });
  const chat = await fetch(`${url}/v1/sessions/${created.sessionId}/proxy/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }),
  });
  t.equal(chat.status, 200, 'the chatbot answers through the package\'s sidecar');
  t.ok((await listContainersByLabel('warmpool.cluster', cluster)).length >= 2, 'app and sidecar containers of the cluster');
});
