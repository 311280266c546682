// The CLI as a newcomer meets it: `apply --dry-run` validates without a registry and shows
// the diff with one; an unreachable registry is one clean line; `sessions create` says what
// it waits for while the pool is still booting (real etcd, a real router in this process).
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Registry, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { eventually, freePort, infraSkip, killOnExit, repoRoot, startEtcd } from '../src/index.js';

const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

interface Run { code: Promise<number>; stdout: () => string; stderr: () => string }
function start(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const p = killOnExit(spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { code: new Promise((resolve) => p.on('exit', (c) => resolve(c ?? 1))), stdout: () => out, stderr: () => err };
}
async function warmpool(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = start(args, env);
  const code = await r.code;
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

t.test('apply --dry-run validates a file with no registry reachable, and shows the diff when one is', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-cli-fb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = path.join(dir, 'services.yaml');
  writeFileSync(good, 'services:\n  - name: chatbot\n    image: warmpool/chatbot-demo\n    warm: 3\n  - name: summarizer\n    image: x\n');
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'services:\n  - name: chatbot\n    warm: -1\n');
  const nowhere = `http://127.0.0.1:${await freePort()}`;

  const offline = await warmpool(['apply', '--dry-run', '-f', good, '--etcd', nowhere]);
  t.equal(offline.code, 0, `a valid file passes without a registry (${offline.stderr})`);
  t.match(offline.stdout, /services\.yaml: valid, 2 services \(chatbot, summarizer\)/);
  t.match(offline.stdout, /no diff: cannot reach the registry, etcd at http:\/\/127\.0\.0\.1:\d+/, 'and says why there is no diff');
  t.notMatch(offline.stdout, /Resolution note/, 'no empty "Resolution note:"');
  const json = await warmpool(['apply', '--dry-run', '--json', '-f', good, '--etcd', nowhere]);
  t.match(JSON.parse(json.stdout), { dryRun: true, valid: true, services: ['chatbot', 'summarizer'], diff: null });

  const rejected = await warmpool(['apply', '--dry-run', '-f', bad, '--etcd', nowhere]);
  t.equal(rejected.code, 1, 'an invalid file fails without a registry too');
  t.match(rejected.stderr, /services\[0\]\.image/, 'naming the field path');
  t.match(rejected.stderr, /services\[0\]\.warm/);

  const real = await warmpool(['apply', '-f', good, '--etcd', nowhere]);
  t.equal(real.code, 1, 'a real apply still needs the registry');
  t.notMatch(real.stderr, /Resolution note/, 'its error has no empty "Resolution note:"');

  if (infraSkip('etcd')) return;
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const env = { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: `/fb-${randomBytes(3).toString('hex')}/` };
  const diff = await warmpool(['apply', '--dry-run', '-f', good], env);
  t.equal(diff.code, 0, diff.stderr);
  t.match(diff.stdout, /chatbot: create \(dry run\)\nsummarizer: create \(dry run\)/, 'with a registry: the diff');
  t.equal((await etcd.etcdctl('get', env.WARMPOOL_PREFIX, '--prefix', '--keys-only')).trim(), '', 'and nothing written');
});

t.test('sessions create prints progress while the pool boots, then the session id', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const prefix = `/fb-${randomBytes(3).toString('hex')}/`;
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 1 });
  if (!spec.ok) throw new Error('spec');
  await reg.putService(spec.spec);
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const inst = { id: 'chatbot-booting-1', service: 'chatbot', host: 'host-a', state: 'booting' as const, address: '127.0.0.1:45001', containerId: '', slot: null, createdAt: Date.now() - 5_000, readyAt: null, bootMs: null };
  await host.putInstance(inst);
  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;

  const run = start(['sessions', 'create', 'chatbot', '--router', url, '--quiet'], { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: prefix });
  // The wait is not silent: a line names what it waits for (one every 3 s).
  await eventually(() => /waiting \S+ for an instance of chatbot: 0 ready, 1 booting \(the oldest for \S+\)/.test(run.stderr()), { timeoutMs: 20_000, what: 'a progress line on stderr' });
  await host.putInstance({ ...inst, state: 'ready', readyAt: Date.now(), bootMs: Date.now() - inst.createdAt });
  t.equal(await run.code, 0, run.stderr());
  const sid = run.stdout().trim();
  t.match(sid, /^[A-Za-z0-9_-]{20,}$/, `--quiet prints only the session id (${sid})`);
  const got = await fetch(`${url}/v1/sessions/${sid}`);
  t.equal(got.status, 200, 'the router knows the session');

  // No registry reachable: the session is still opened; the progress says how long it waited.
  const inst2 = { ...inst, id: 'chatbot-booting-2', address: '127.0.0.1:45002', createdAt: Date.now() };
  await host.putInstance(inst2);
  const blind = start(['sessions', 'create', 'chatbot', '--router', url, '--etcd', `http://127.0.0.1:${await freePort()}`]);
  await eventually(() => /waiting \S+ for an instance of chatbot \(the router waits up to 120 s\)/.test(blind.stderr()), { timeoutMs: 20_000, what: 'a progress line without a registry' });
  await host.putInstance({ ...inst2, state: 'ready', readyAt: Date.now(), bootMs: 1_000 });
  t.equal(await blind.code, 0, blind.stderr());
  // (The router sends expiresAt as an ISO time: it was read as a number and printed "-".)
  t.match(blind.stdout(), /^session \S+ on instance chatbot-booting-2 \(after \S+; expires in \d[\dhms]*\)/, 'the session, described, with its expiry');

  // Flags after `create` are its own: --json and the registry flags (they went to `sessions`).
  const inst3 = { ...inst, id: 'chatbot-booting-3', address: '127.0.0.1:45003', createdAt: Date.now() };
  await host.putInstance({ ...inst3, state: 'ready', readyAt: Date.now(), bootMs: 1_000 });
  const asJson = await warmpool(['sessions', 'create', 'chatbot', '--router', url, '--json', '--etcd', etcd.endpoints.join(','), '--prefix', prefix]);
  t.equal(asJson.code, 0, asJson.stderr);
  t.match(JSON.parse(asJson.stdout), { sessionId: /^[A-Za-z0-9_-]{20,}$/, instanceId: 'chatbot-booting-3' }, '--json after create prints JSON');

  const noRouter = await warmpool(['sessions', 'create', 'chatbot', '--router', `http://127.0.0.1:${await freePort()}`], { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: prefix });
  t.equal(noRouter.code, 1);
  t.match(noRouter.stderr, /cannot reach the router at http:\/\/127\.0\.0\.1:\d+/, 'an unreachable router is named');

  // A port fetch refuses before connecting (the Fetch standard's bad ports): said so, not "bad port".
  const blocked = await warmpool(['sessions', 'create', 'chatbot', '--router', 'http://127.0.0.1:1'], { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: prefix });
  t.equal(blocked.code, 1);
  t.match(blocked.stderr, /--router http:\/\/127\.0\.0\.1:1: HTTP clients refuse port 1 \(a port the Fetch standard blocks\)/, blocked.stderr.trim());

  // A service the router does not know: "not found", exit 2 (cli/README.md's exit codes).
  const unknown = await warmpool(['sessions', 'create', 'nosuch', '--router', url, '--wait', '1'], { WARMPOOL_ETCD: etcd.endpoints.join(','), WARMPOOL_PREFIX: prefix });
  t.equal(unknown.code, 2, `an unknown service exits 2 (${unknown.stderr.trim()})`);
  t.match(unknown.stderr, /the router answered 404/);
});
