// Regression (break-it pass): the agent checked that a host path resolves under an allowed
// prefix, then gave the engine the path as written, so a symlink swapped in between (here:
// after the check, before the container starts) made the engine mount whatever it pointed at
// by then. The agent now hands the engine the real path its check approved: a real engine
// starts the container after the swap and the container still sees the approved directory.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { appContainerSpec, DEFAULT_ALLOW, DockerodeRuntime, grantHostOptions } from '@warmpool/agent';
import { infraSkip, removeContainersByLabel, testRunId } from '../src/index.js';
import { chatSpec, requireImages } from './fixtures/agent-harness.js';

const exec = promisify(execFile);

t.test('a symlink swapped after the host-path check does not redirect the mount', { skip: infraSkip('docker') }, async (t) => {
  await requireImages();
  const run = testRunId();
  const root = realpathSync(mkdtempSync(path.join(tmpdir(), 'wp-swap-')));
  t.teardown(async () => {
    await removeContainersByLabel('warmpool.cluster', run);
    rmSync(root, { recursive: true, force: true });
  });
  const allowed = path.join(root, 'models');
  const outside = path.join(root, 'outside');
  mkdirSync(path.join(allowed, 'v1'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(path.join(allowed, 'v1', 'approved-file'), 'x');
  writeFileSync(path.join(outside, 'outside-file'), 'x');
  const link = path.join(allowed, 'current');
  symlinkSync(path.join(allowed, 'v1'), link);

  // The app lists its mount and exits (the demo image carries node).
  const spec = chatSpec({
    name: 'swap', volumes: [{ source: link, target: '/m', readOnly: true }],
    entrypoint: ['/usr/bin/node', '-e', 'console.log(require("fs").readdirSync("/m").join(","))'],
  });
  const granted = grantHostOptions(spec, { ...DEFAULT_ALLOW, hostPaths: [allowed] });
  t.ok(granted.ok, 'the link resolves under the allowed prefix: granted');
  if (!granted.ok) return;

  // The swap: the same path now points out of the allowed tree.
  rmSync(link);
  symlinkSync(outside, link);

  const runtime = new DockerodeRuntime();
  const id = await runtime.create({
    ...appContainerSpec({
      cluster: run, hostId: 'h', instanceId: `swap-${run}`, slot: 0, spec, publishIp: '127.0.0.1', sidecarImage: 'warmpool/sidecar',
      sidecarPort: 9000, runDir: root, instanceKey: 'k', grant: granted.grant,
    }),
  });
  await runtime.start(id);
  await exec('docker', ['wait', id], { timeout: 30_000 });
  const { stdout } = await exec('docker', ['logs', id], { timeout: 30_000 });
  t.equal(stdout.trim(), 'approved-file', 'the container sees the directory the check approved');
  const [info] = JSON.parse((await exec('docker', ['inspect', id])).stdout) as { HostConfig: { Binds: string[] } }[];
  t.same(info!.HostConfig.Binds, [`${path.join(allowed, 'v1')}:/m:ro`], 'the engine was given the real path');
});
