// The demo stops everything it started however its user leaves it, not only on Ctrl-C:
// a closed terminal (SIGHUP to its whole process group: etcd and the routers die of it,
// while agents and Consul take SIGHUP as "reload" and live on) and a `kill` of the
// `npm run demo` above it (the parent goes, the demo is left alone). Before, both left the
// demo, its agents, Consul and the containers running.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { eventually, infraSkip, listContainersByLabel, removeContainersByLabel, repoRoot } from '../src/index.js';
import { requireImages } from './fixtures/agent-harness.js';

const demoJs = path.join(repoRoot, 'test', 'dist', 'src', 'demo.js');

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
/** Every descendant of `pid` (children of children too). */
const descendants = (pid: number): number[] => {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch { /* gone */ }
  return kids.flatMap((k) => [k, ...descendants(k)]);
};

async function demoStops(t: Test, how: 'terminal closed' | 'parent killed'): Promise<void> {
  await requireImages();
  const tmp = mkdtempSync(path.join(tmpdir(), 'warmpool-demo-stop-'));
  // A shell above the demo, as `npm run demo` is; its own process group, as a terminal's job.
  const shell = spawn('sh', ['-c', `"${process.execPath}" "${demoJs}"; echo "demo exited $?"`], {
    cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BOOT_SECONDS: '1', WARMPOOL_DEMO_PORTS: '0', TMPDIR: tmp },
  });
  let out = '';
  shell.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  shell.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  let cluster = '';
  let pids: number[] = [];
  t.teardown(async () => {
    for (const p of [shell.pid!, ...pids]) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    if (cluster) await removeContainersByLabel('warmpool.cluster', cluster);
    rmSync(tmp, { recursive: true, force: true });
    if (!t.passing()) process.stderr.write(`--- demo output:\n${out.slice(-6000)}\n`);
  });
  await eventually(() => /\[pool\] chatbot: 3 ready/.test(out) || (shell.exitCode !== null ? Promise.reject(new Error(out)) : false), { timeoutMs: 90_000, what: 'demo up, pool ready' });
  cluster = /label=warmpool\.cluster=(\S+)/.exec(out)?.[1] ?? '';
  t.ok(cluster, `the demo's containers' label (${cluster})`);
  pids = descendants(shell.pid!);
  t.ok(pids.length >= 7, `the demo and its mesh run under the shell (${pids.length} processes)`);
  t.ok((await listContainersByLabel('warmpool.cluster', cluster)).length >= 6, 'its containers run');

  if (how === 'terminal closed') process.kill(-shell.pid!, 'SIGHUP');
  else process.kill(shell.pid!, 'SIGKILL');

  await eventually(() => pids.every((p) => !alive(p)) || false, { timeoutMs: 60_000, intervalMs: 250, what: `every process of the demo gone (${how})` });
  t.pass(`no process of the demo left (${pids.length} were running)`);
  t.same(await listContainersByLabel('warmpool.cluster', cluster), [], 'no container of the demo left');
}

t.test('the demo stops everything when its terminal is closed (SIGHUP to the group)', { skip: infraSkip('docker', 'etcd', 'consul') }, (t) => demoStops(t, 'terminal closed'));
t.test('the demo stops everything when the command above it is killed', { skip: infraSkip('docker', 'etcd', 'consul') }, (t) => demoStops(t, 'parent killed'));
