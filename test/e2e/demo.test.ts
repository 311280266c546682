// The README's first command: the demo mesh comes up with a warm pool, says what it does
// at every step, reports the pool from one watch (no command spawned per report), prints
// commands that work as printed, serves a chat session, and Ctrl-C (SIGINT to its whole
// process group, as a terminal sends it) stops everything it started and removes its
// containers. A port the README promises that is already taken is an error, not a move.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { eventually, infraSkip, listContainersByLabel, removeContainersByLabel, repoRoot } from '../src/index.js';
import { requireImages } from './fixtures/agent-harness.js';

const demoJs = path.join(repoRoot, 'test', 'dist', 'src', 'demo.js');

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const sh = (line: string): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
  execFile('bash', ['-c', line], { cwd: repoRoot, timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
});

t.test('npm run demo: progress, up, printed commands work, a chat session, and Ctrl-C leaves nothing behind', { skip: infraSkip('docker', 'etcd', 'consul') }, async (t) => {
  await requireImages();
  // Everything the demo writes to disk (etcd, Consul, agents' run dirs) goes under a
  // directory of this test, removed in teardown even when the demo had to be killed.
  const tmp = mkdtempSync(path.join(tmpdir(), 'warmpool-demo-test-'));
  // Its own process group, like a terminal's foreground job; free ports (another demo may
  // hold 8080 on a shared machine).
  const demo = spawn(process.execPath, [demoJs], {
    cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BOOT_SECONDS: '1', WARMPOOL_DEMO_PORTS: '0', TMPDIR: tmp },
  });
  let out = '';
  demo.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  demo.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  let cluster = '';
  t.teardown(async () => {
    if (demo.exitCode === null && demo.signalCode === null) {
      // The demo's own Ctrl-C path first (it removes what it started), then the hard way.
      try { process.kill(-demo.pid!, 'SIGINT'); } catch { /* gone */ }
      const timer = setTimeout(() => { try { process.kill(-demo.pid!, 'SIGKILL'); } catch { /* gone */ } }, 60_000);
      await exited;
      clearTimeout(timer);
    }
    if (cluster) await removeContainersByLabel('warmpool.cluster', cluster);
    rmSync(tmp, { recursive: true, force: true });
    if (!t.passing()) process.stderr.write(`--- demo output:\n${out.slice(-6000)}\n`);
  });

  await eventually(() => /Warmpool demo is up/.test(out) || (demo.exitCode !== null ? Promise.reject(new Error(out)) : false), { timeoutMs: 90_000, what: 'demo up' });
  for (const step of ['starting etcd', 'starting Consul', 'applying the services file', 'starting agent-1', 'starting router-2']) {
    t.match(out, new RegExp(`demo: \\[ *\\d+s\\] ${step}`), `says "${step}" before it starts`);
  }
  cluster = /label=warmpool\.cluster=(\S+)/.exec(out)?.[1] ?? '';
  t.ok(cluster, `the demo names its containers' label (${cluster})`);
  const router = /routers\s+(http:\/\/\S+)/.exec(out)?.[1];
  t.ok(router, `a router URL (${router})`);
  t.match(out, /prefix \/warmpool\//, 'the default prefix: `warmpool status` needs only the etcd address');
  await eventually(() => /\[pool\] chatbot: 3 ready/.test(out), { timeoutMs: 90_000, what: 'three ready instances' });
  t.ok((out.match(/\[pool\] /g) ?? []).length >= 2, 'the pool is reported as it fills');

  // No process is started per report: the demo's children stay the mesh's own.
  const mesh = new Set(childrenOf(demo.pid!));
  for (let i = 0; i < 12; i++) {
    const extra = childrenOf(demo.pid!).filter((p) => !mesh.has(p));
    if (extra.length) { t.fail(`the demo started processes while idle: ${extra.join(' ')}`); break; }
    await new Promise((r) => setTimeout(r, 500));
  }
  t.equal(mesh.size, 6, 'etcd, Consul, 2 agents and 2 routers');

  // The commands the demo prints work as printed.
  const statusLine = /^\s+(WARMPOOL_ETCD=\S+ npx warmpool status)$/m.exec(out)?.[1];
  t.ok(statusLine, 'it prints a status command');
  const st = await sh(statusLine!);
  t.equal(st.code, 0, st.stderr);
  t.match(st.stdout, /chatbot\s+3\s+\d+\s+3\s/, 'the printed status command shows the pool');
  const createLine = /^\s+(SID=\$\(.*sessions create.*\))$/m.exec(out)?.[1];
  t.ok(createLine, 'it prints a session command');
  const created = await sh(`${createLine!} && echo "SID=$SID"`);
  t.equal(created.code, 0, created.stderr);
  const sessionId = /SID=(\S+)/.exec(created.stdout)?.[1] ?? '';
  t.match(sessionId, /^[A-Za-z0-9_-]{20,}$/, 'the printed session command yields a session id');

  const chat = await fetch(`${router}/v1/sessions/${sessionId}/proxy/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello' }] }),
  });
  t.equal(chat.status, 200, 'the chatbot answers');
  t.ok(((await chat.json()) as { choices?: unknown[] }).choices?.length, 'a chat completion');
  t.equal((await listContainersByLabel('warmpool.cluster', cluster)).length >= 6, true, 'containers running (app + sidecar per instance)');

  const pids = childrenOf(demo.pid!);
  process.kill(-demo.pid!, 'SIGINT');
  t.equal(await exited, 0, 'the demo exits 0 on Ctrl-C');
  t.match(out, /stopped\./, 'it says it stopped');
  t.same(await listContainersByLabel('warmpool.cluster', cluster), [], 'no container of the demo left');
  t.same(pids.filter(alive), [], `no process of the demo left (${pids.length} were running)`);
});

t.test('npm run demo: a promised port already taken is said, not silently changed', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as net.AddressInfo).port;
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(process.execPath, [demoJs], { cwd: repoRoot, timeout: 60_000, env: { ...process.env, WARMPOOL_DEMO_PORTS: `${port},0` } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, out: stdout + stderr });
    });
  });
  t.equal(r.code, 1, 'the demo stops');
  t.match(r.out, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`), 'and says which port is taken');
  t.match(r.out, /WARMPOOL_DEMO_PORTS=/, 'and how to choose others');
  t.notMatch(r.out, /Warmpool demo is up/, 'nothing started on another port');
});
