// The README's first command: the demo mesh comes up with a warm pool, serves a chat
// session, and Ctrl-C (SIGINT to its whole process group, as a terminal sends it) stops
// everything it started and removes its containers.
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { eventually, infraSkip, listContainersByLabel, removeContainersByLabel, repoRoot } from '../src/index.js';
import { requireImages } from './fixtures/agent-harness.js';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

t.test('npm run demo: up, a chat session, and Ctrl-C leaves nothing behind', { skip: infraSkip('docker', 'etcd', 'consul') }, async (t) => {
  await requireImages();
  // Its own process group, like a terminal's foreground job.
  const demo = spawn(process.execPath, [path.join(repoRoot, 'test', 'dist', 'src', 'demo.js')], {
    cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BOOT_SECONDS: '1' },
  });
  let out = '';
  demo.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  demo.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  let cluster = '';
  t.teardown(async () => {
    if (demo.exitCode === null && demo.signalCode === null) {
      try { process.kill(-demo.pid!, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
    if (cluster) await removeContainersByLabel('warmpool.cluster', cluster);
    if (!t.passing()) process.stderr.write(`--- demo output:\n${out.slice(-6000)}\n`);
  });

  await eventually(() => /Warmpool demo is up/.test(out) || (demo.exitCode !== null ? Promise.reject(new Error(out)) : false), { timeoutMs: 90_000, what: 'demo up' });
  cluster = /label=warmpool\.cluster=(\S+)/.exec(out)?.[1] ?? '';
  t.ok(cluster, `the demo names its containers' label (${cluster})`);
  const router = /routers\s+(http:\/\/\S+)/.exec(out)?.[1];
  t.ok(router, `a router URL (${router})`);
  await eventually(() => /\[pool\] chatbot: 3 ready/.test(out), { timeoutMs: 90_000, what: 'three ready instances' });

  const created = await fetch(`${router}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
  t.equal(created.status, 201, 'a session through the demo router');
  const { sessionId } = (await created.json()) as { sessionId: string };
  const chat = await fetch(`${router}/v1/sessions/${sessionId}/proxy/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello' }] }),
  });
  t.equal(chat.status, 200, 'the chatbot answers');
  t.ok(((await chat.json()) as { choices?: unknown[] }).choices?.length, 'a chat completion');
  t.equal((await listContainersByLabel('warmpool.cluster', cluster)).length >= 6, true, 'containers running (app + sidecar per instance)');

  const pids = (await import('node:fs')).readFileSync(`/proc/${demo.pid}/task/${demo.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  process.kill(-demo.pid!, 'SIGINT');
  t.equal(await exited, 0, 'the demo exits 0 on Ctrl-C');
  t.match(out, /stopped\./, 'it says it stopped');
  t.same(await listContainersByLabel('warmpool.cluster', cluster), [], 'no container of the demo left');
  t.same(pids.filter(alive), [], `no process of the demo left (${pids.length} were running)`);
});
