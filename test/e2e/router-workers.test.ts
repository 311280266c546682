// `warmpool router --workers 2` on a real etcd: two router processes share one port, any
// of them serves any session, /metrics counts for the whole router whichever worker
// answers, a killed worker is replaced while the other keeps serving, SIGTERM stops them
// all, and a primary killed with SIGKILL leaves no worker behind. Configured the way the
// systemd unit does it (WARMPOOL_* variables), with Consul registration and from main.js.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Registry, instanceKey, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, freePort, infraSkip, killOnExit, repoRoot, startConsul, startEtcd, testRunId } from '../src/index.js';
import { startUpstream, type Upstream } from '../bench/router-upstream.js';

const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One request on a connection of its own (so the primary hands it to the next worker). */
function request(port: number, method: string, urlPath: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method, path: urlPath, agent: false,
      headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // Bounded: a connection handed to a worker at the instant it is killed is lost, as with
    // any killed process; the caller retries.
    req.setTimeout(2000, () => req.destroy(new Error('no answer within 2 s')));
    req.end(body);
  });
}

interface RouterProc { proc: ChildProcess; port: number; out: () => string; exited: Promise<number | null> }

async function startRouter(etcd: string[], prefix: string, args: string[] = [], env: Record<string, string> = {}): Promise<RouterProc> {
  const port = await freePort();
  return spawnRouter([bin, 'router', '--etcd', etcd.join(','), '--prefix', prefix, '--listen', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...args], port, env);
}

/** Spawns a router (the CLI or main.js); WARMPOOL_ROUTER_WORKERS only if `env` sets it. */
function spawnRouter(argv: string[], port: number, env: Record<string, string> = {}): RouterProc {
  const proc = killOnExit(spawn(process.execPath, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'WARMPOOL_ROUTER_WORKERS')), ...env },
  }));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, port, out: () => out, exited };
}

/** The port a router announces in its "router listening" line (it fails if the router exits first). */
function announcedPort(r: RouterProc): Promise<number> {
  return eventually(() => {
    const m = /"msg":"router listening".*"port":(\d+)/.exec(r.out());
    if (r.proc.exitCode !== null) throw new Error(r.out());
    return m ? Number(m[1]) : false;
  }, { timeoutMs: 30_000, what: 'router listening' });
}

/** Stops a router and everything it forked, whatever state the test left it in. */
async function killAll(r: RouterProc): Promise<void> {
  for (const c of childrenOf(r.proc.pid!)) { try { process.kill(c, 'SIGKILL'); } catch { /* gone */ } }
  if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
  await r.exited;
}

function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (labels && !line.includes(labels)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/** A registry with one service and `n` ready instances (real HTTP upstreams checking the credential). */
async function meshWith(t: Test, n: number): Promise<{ etcd: string[]; prefix: string }> {
  const etcd = await startEtcd();
  const prefix = `/wp-${testRunId()}/`;
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const agent = new Registry(store, { prefix });
  const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 60, maxLifetimeSec: 3600 } });
  if (!spec.ok) throw new Error('spec');
  await agent.putService(spec.spec);
  const secret = await agent.clusterSecret();
  const host = await agent.openHost({
    id: 'env-host', address: '127.0.0.1', capacity: { instances: n, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'e2e',
  }, 10);
  const upstreams: Upstream[] = [];
  t.teardown(async () => {
    await host.close({ revoke: true }).catch(() => undefined);
    await agent.close();
    await store.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await etcd.stop();
  });
  for (let i = 0; i < n; i++) {
    const id = `e-${i}`;
    const u = await startUpstream({ id, instanceKey: instanceKey(secret, id) });
    upstreams.push(u);
    await host.putInstance({ id, service: 'chatbot', host: 'env-host', state: 'ready', address: u.address, containerId: `c-${id}`, slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 1 });
  }
  return { etcd: etcd.endpoints, prefix };
}

t.test('router with two worker processes', { skip: infraSkip('etcd') }, async (t) => {
  const mesh = await meshWith(t, 20);
  const routers: RouterProc[] = [];
  t.teardown(async () => { for (const r of routers) await killAll(r); });

  const r = await startRouter(mesh.etcd, mesh.prefix, ['--workers', '2']);
  routers.push(r);
  await eventually(() => /"msg":"router listening".*"workers":2/.test(r.out()) || (r.proc.exitCode !== null ? Promise.reject(new Error(r.out())) : false), { timeoutMs: 30_000, what: 'router listening' });
  const workers = childrenOf(r.proc.pid!);
  t.equal(workers.length, 2, `two worker processes (${workers.join(', ')})`);
  await eventually(async () => (await request(r.port, 'GET', '/readyz')).status === 200 && (await request(r.port, 'GET', '/readyz')).status === 200, { timeoutMs: 20_000, what: 'both workers ready' });

  // Sessions over separate connections (spread over both workers), each pinned to its instance.
  const sessions: { id: string; instanceId: string }[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await request(r.port, 'POST', '/v1/sessions', '{"service":"chatbot"}');
    t.equal(res.status, 201, `session ${i}: ${res.body}`);
    const s = JSON.parse(res.body) as { sessionId: string; instanceId: string };
    sessions.push({ id: s.sessionId, instanceId: s.instanceId });
  }
  t.equal(new Set(sessions.map((s) => s.instanceId)).size, 12, 'twelve sessions, twelve instances: no instance handed out twice across workers');
  for (const s of sessions) {
    for (let k = 0; k < 2; k++) {
      const res = await request(r.port, 'GET', `/v1/sessions/${s.id}/proxy/v1/models`);
      if (res.status !== 200 || res.headers['x-instance-id'] !== s.instanceId) t.fail(`session ${s.id} went to ${String(res.headers['x-instance-id'])} (${res.status})`);
    }
  }
  t.pass('every session reached its own instance through either worker');

  // /metrics: the whole router, whichever worker answers.
  for (let k = 0; k < 4; k++) {
    const m = await request(r.port, 'GET', '/metrics');
    t.equal(m.status, 200);
    t.equal(metric(m.body, 'warmpool_router_claim_duration_seconds_count'), 12, `scrape ${k}: 12 claims counted over both workers`);
    t.equal(metric(m.body, 'warmpool_router_active_sessions', 'service="chatbot"'), 12, `scrape ${k}: 12 active sessions, not one count per worker`);
  }

  // A worker killed: the primary replaces it; sessions keep being served meanwhile.
  const victim = workers[0]!;
  process.kill(victim, 'SIGKILL');
  // New connections right after the kill: each is answered by the survivor, or reset at once
  // if the dying worker had accepted it. None may hang (a hand-off to a dead worker would).
  const burst = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    await new Promise((res) => setTimeout(res, i * 5));
    try {
      const res = await request(r.port, 'GET', `/v1/sessions/${sessions[0]!.id}/proxy/v1/models`);
      return res.status === 200 && res.headers['x-instance-id'] === sessions[0]!.instanceId ? 'ok' : `status ${res.status}`;
    } catch (err) {
      return (err as Error).message;
    }
  }));
  t.notOk(burst.some((o) => o.includes('no answer')), `no connection hangs after a worker is killed (${burst.join(', ')})`);
  t.ok(burst.filter((o) => o === 'ok').length >= 18, 'the surviving worker serves the session right after the kill');
  const replaced = await eventually(() => {
    const now = childrenOf(r.proc.pid!);
    return now.length === 2 && !now.includes(victim) ? now : false;
  }, { timeoutMs: 20_000, what: 'worker replaced' });
  t.ok(replaced.includes(workers[1]!), 'the other worker kept running');
  await eventually(async () => {
    for (let k = 0; k < 4; k++) {
      const res = await request(r.port, 'GET', `/v1/sessions/${sessions[k]!.id}/proxy/v1/models`);
      if (res.status !== 200 || res.headers['x-instance-id'] !== sessions[k]!.instanceId) return false;
    }
    return true;
  }, { timeoutMs: 20_000, what: 'sessions served by both workers again' });
  t.match(r.out(), /router worker died; replacing it/, 'the death is logged');

  // SIGTERM: every process exits, cleanly.
  const pids = childrenOf(r.proc.pid!);
  r.proc.kill('SIGTERM');
  t.equal(await r.exited, 0, 'primary exits 0');
  for (const p of pids) t.notOk(alive(p), `worker ${p} stopped`);

  // SIGKILL of the primary: its workers notice the lost channel and exit.
  const r2 = await startRouter(mesh.etcd, mesh.prefix, ['--workers', '2']);
  routers.push(r2);
  await eventually(() => /"workers":2/.test(r2.out()), { timeoutMs: 30_000, what: 'second router listening' });
  const orphans = childrenOf(r2.proc.pid!);
  t.equal(orphans.length, 2);
  r2.proc.kill('SIGKILL');
  await r2.exited;
  await eventually(() => orphans.every((p) => !alive(p)), { timeoutMs: 10_000, what: 'workers of a killed primary exit' });
  t.pass('no worker outlives a killed primary');
});

t.test('--workers: bad values are refused, naming the flag', async (t) => {
  for (const v of ['0', 'two', '-1']) {
    const r = await startRouter(['http://127.0.0.1:1'], '/x/', ['--workers', v]);
    const code = await r.exited;
    t.not(code, 0, `--workers ${v}: exit ${code}`);
    t.match(r.out(), /--workers/, `--workers ${v}: the message names the flag`);
  }
});

t.test('--workers 2 that cannot start: one clear message, a prompt non-zero exit, no process left', async (t) => {
  // A bad registry address is refused before any worker is forked.
  const bad = await startRouter(['not-a-url'], '/x/', ['--workers', '2']);
  t.not(await bad.exited, 0, 'a bad --etcd: non-zero exit');
  t.match(bad.out(), /--etcd/, 'the message names the flag');
  t.equal(bad.out().match(/--etcd/g)?.length, 1, 'said once, not once per worker');

  // A port in use fails in the workers: they exit (their channel to the primary does not
  // keep them), and the primary reports it and exits too.
  const squatter = http.createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => squatter.close(() => r())));
  const busy = (squatter.address() as { port: number }).port;
  const r = spawnRouter([bin, 'router', '--etcd', 'http://127.0.0.1:1', '--prefix', '/x/', '--listen', '127.0.0.1', '--port', String(busy), '--log-level', 'warn', '--workers', '2'], busy);
  t.teardown(() => killAll(r));
  const forked: number[] = [];
  const watch = setInterval(() => { for (const c of childrenOf(r.proc.pid!)) if (!forked.includes(c)) forked.push(c); }, 20);
  const timeout = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref());
  const code = await Promise.race([r.exited, timeout]);
  clearInterval(watch);
  t.not(code, 'hung', 'the router exits instead of hanging');
  t.not(code, 0, `non-zero exit (${String(code)})`);
  t.match(r.out(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy}: the address is in use`), 'the message names the address and the reason');
  for (const p of forked) t.notOk(alive(p), `worker ${p} is gone`);
});

t.test('--port 0 --workers 2: when every worker has died, the replacements serve on the announced port', { skip: infraSkip('etcd') }, async (t) => {
  const mesh = await meshWith(t, 2);
  const r = spawnRouter([bin, 'router', '--etcd', mesh.etcd.join(','), '--prefix', mesh.prefix, '--listen', '127.0.0.1', '--port', '0', '--log-level', 'warn', '--workers', '2'], 0);
  t.teardown(() => killAll(r));
  const announced = await announcedPort(r);
  // Listening comes before ready (each worker lists the registry first).
  await eventually(async () => (await request(announced, 'GET', '/readyz').catch(() => undefined))?.status === 200, { timeoutMs: 20_000, what: 'ready on the announced port' });
  t.pass('ready on the announced port');
  const first = childrenOf(r.proc.pid!);
  for (const p of first) process.kill(p, 'SIGKILL');
  await eventually(() => { const now = childrenOf(r.proc.pid!); return now.length === 2 && now.every((p) => !first.includes(p)); }, { timeoutMs: 20_000, what: 'both workers replaced' });
  const res = await eventually(async () => {
    const x = await request(announced, 'GET', '/readyz').catch(() => undefined);
    return x?.status === 200 ? x : false;
  }, { timeoutMs: 20_000, what: 'ready again on the announced port' });
  t.equal(res.status, 200, 'the replacements answer on the port the router announced');
});

interface ConsulHealthEntry { Service: { ID: string; Service: string; Address: string; Port: number }; Checks: { Status: string }[] }

t.test('WARMPOOL_ROUTER_WORKERS=2 with WARMPOOL_CONSUL_AGENT: one Consul registration for the whole router', { skip: infraSkip('etcd', 'consul') }, async (t) => {
  const mesh = await meshWith(t, 4);
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  const routerHealth = async (): Promise<ConsulHealthEntry[]> => {
    const res = await fetch(`${consul.url}/v1/health/service/warmpool-router`);
    return (await res.json()) as ConsulHealthEntry[];
  };

  // As the systemd unit runs it: flags for the basics, the rest from its environment file.
  const r = await startRouter(mesh.etcd, mesh.prefix, [], {
    WARMPOOL_ROUTER_WORKERS: '2', WARMPOOL_CONSUL_AGENT: `127.0.0.1:${consul.httpPort}`, WARMPOOL_ADVERTISE: '127.0.0.1',
  });
  t.teardown(() => killAll(r));
  await eventually(() => /"msg":"router listening".*"workers":2/.test(r.out()) || (r.proc.exitCode !== null ? Promise.reject(new Error(r.out())) : false), { timeoutMs: 30_000, what: 'router listening' });
  t.equal(childrenOf(r.proc.pid!).length, 2, 'two workers from WARMPOOL_ROUTER_WORKERS');

  const passing = (e: ConsulHealthEntry[]): boolean => e.length === 1 && e[0]!.Checks.every((c) => c.Status === 'passing');
  const entries = await eventually(async () => { const e = await routerHealth(); return passing(e) ? e : false; }, { timeoutMs: 15_000, what: 'router registered in Consul, passing' });
  t.equal(entries[0]!.Service.Port, r.port, 'registered with the port the workers share');
  t.equal(entries[0]!.Service.Address, '127.0.0.1', 'at the advertised address');

  // The registered address serves sessions, whichever worker takes the connection.
  const target = `http://${entries[0]!.Service.Address}:${entries[0]!.Service.Port}`;
  for (let i = 0; i < 4; i++) {
    const s = await fetch(`${target}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: '{"service":"chatbot"}' });
    t.equal(s.status, 201, `session ${i} through the registered address`);
    const { sessionId, instanceId } = (await s.json()) as { sessionId: string; instanceId: string };
    const p = await fetch(`${target}/v1/sessions/${sessionId}/proxy/whoami`, { headers: { connection: 'close' } });
    t.equal(p.status, 200, `session ${i}: the instance accepted the router's credential`);
    t.equal(p.headers.get('x-instance-id'), instanceId, `session ${i} reaches its instance`);
    await p.arrayBuffer();
  }

  // A worker dies: the supervisor replaces it; Consul keeps exactly one passing entry.
  const [victim] = childrenOf(r.proc.pid!);
  process.kill(victim!, 'SIGKILL');
  await eventually(() => { const now = childrenOf(r.proc.pid!); return now.length === 2 && !now.includes(victim!); }, { timeoutMs: 20_000, what: 'worker replaced' });
  t.ok(passing(await routerHealth()), 'still one passing registration after a worker was replaced');

  // Every worker hangs while the primary lives: the check goes through the shared port,
  // so it turns critical (Consul DNS stops naming this router), and passing once they run.
  const hung = childrenOf(r.proc.pid!);
  for (const p of hung) process.kill(p, 'SIGSTOP');
  const critical = await eventually(async () => {
    const c = (await (await fetch(`${consul.url}/v1/agent/checks`)).json()) as Record<string, { ServiceName: string; Status: string; Output: string }>;
    const mine = Object.values(c).find((x) => x.ServiceName === 'warmpool-router');
    return mine?.Status === 'critical' ? mine : false;
  }, { timeoutMs: 20_000, what: 'check critical while every worker hangs' });
  t.match(critical.Output, /health probe failed/, `critical with the reason (${critical.Output})`);
  t.same(await routerHealth().then((e) => e.map((x) => x.Checks.some((c) => c.Status === 'critical'))), [true], 'Consul no longer lists it as passing');
  for (const p of hung) process.kill(p, 'SIGCONT');
  await eventually(async () => passing(await routerHealth()), { timeoutMs: 20_000, what: 'passing again once the workers run' });
  t.pass('passing again once the workers run');

  // Every worker dies at once: until the primary's replacements listen (after its restart
  // backoff) nothing serves, and the check says so at once, not at the next TTL pass.
  // Consul's blocking queries record every change of the check, however brief.
  const seen: { Status: string; Output: string }[] = [];
  let watching = true;
  const watcher = (async () => {
    let index = '0';
    while (watching) {
      const res = await fetch(`${consul.url}/v1/health/checks/warmpool-router?index=${index}&wait=2s`).catch(() => undefined);
      if (!res) { await new Promise((r) => setTimeout(r, 100)); continue; }
      index = res.headers.get('x-consul-index') ?? index;
      const checks = (await res.json()) as { Status: string; Output: string }[];
      if (checks[0] && (seen.length === 0 || seen.at(-1)!.Status !== checks[0].Status)) seen.push(checks[0]);
    }
  })();
  await eventually(() => seen.length > 0, { timeoutMs: 5000, what: 'check watched' });
  const before = childrenOf(r.proc.pid!);
  for (const p of before) process.kill(p, 'SIGKILL');
  await eventually(() => { const now = childrenOf(r.proc.pid!); return now.length === 2 && now.every((p) => !before.includes(p)); }, { timeoutMs: 20_000, what: 'both workers replaced' });
  await eventually(async () => passing(await routerHealth()), { timeoutMs: 20_000, what: 'passing again once the replacements serve' });
  watching = false;
  await watcher;
  const down = seen.find((c) => c.Status === 'critical');
  t.ok(down, `critical while no worker ran (${seen.map((c) => c.Status).join(' -> ')})`);
  t.match(down?.Output ?? '', /health probe failed/, 'with the reason');
  t.equal(seen.at(-1)?.Status, 'passing', 'passing once the replacements serve');
  const after = await routerHealth();
  t.same(after.map((e) => e.Service.Port), [r.port], 'still one registration, at the same port');

  // SIGTERM: the registration goes with the router.
  const pids = childrenOf(r.proc.pid!);
  r.proc.kill('SIGTERM');
  t.equal(await r.exited, 0, 'primary exits 0');
  for (const p of pids) t.notOk(alive(p), `worker ${p} stopped`);
  t.same(await routerHealth(), [], 'deregistered from Consul on SIGTERM');
});

t.test('node router/dist/src/main.js with WARMPOOL_ROUTER_WORKERS=2 serves from both workers and stops them all', { skip: infraSkip('etcd') }, async (t) => {
  const mesh = await meshWith(t, 6);
  const port = await freePort();
  const r = spawnRouter([path.join(repoRoot, 'router', 'dist', 'src', 'main.js')], port, {
    WARMPOOL_ETCD: mesh.etcd.join(','), WARMPOOL_PREFIX: mesh.prefix, WARMPOOL_ROUTER_HOST: '127.0.0.1', WARMPOOL_ROUTER_PORT: String(port),
    WARMPOOL_ROUTER_WORKERS: '2', WARMPOOL_LOG_LEVEL: 'info',
  });
  t.teardown(() => killAll(r));
  await eventually(() => /router listening/.test(r.out()) || (r.proc.exitCode !== null ? Promise.reject(new Error(r.out())) : false), { timeoutMs: 30_000, what: 'main.js router listening' });
  const workers = childrenOf(r.proc.pid!);
  t.equal(workers.length, 2, 'two worker processes');

  // /metrics counts for the whole router: sessions created over separate connections (the
  // primary spreads them over the workers) all show, whichever worker answers.
  for (let i = 0; i < 6; i++) {
    const res = await request(port, 'POST', '/v1/sessions', '{"service":"chatbot"}');
    t.equal(res.status, 201, `session ${i}: ${res.body}`);
    const { sessionId, instanceId } = JSON.parse(res.body) as { sessionId: string; instanceId: string };
    const p = await request(port, 'GET', `/v1/sessions/${sessionId}/proxy/whoami`);
    t.equal(p.status, 200, `session ${i}: the instance accepted the router's credential`);
    t.equal(p.headers['x-instance-id'], instanceId, `session ${i} reaches its instance`);
  }
  const m = await request(port, 'GET', '/metrics');
  t.equal(metric(m.body, 'warmpool_router_claim_duration_seconds_count'), 6, 'claims of both workers counted together');

  r.proc.kill('SIGTERM');
  t.equal(await r.exited, 0, 'primary exits 0 on SIGTERM');
  for (const p of workers) t.notOk(alive(p), `worker ${p} stopped`);
});

t.test('--backlog reaches listen(2) through the CLI, also for a multi-process router; bad values are refused naming the flag', { skip: infraSkip('etcd') }, async (t) => {
  const mesh = await meshWith(t, 1);
  const r = spawnRouter([bin, 'router', '--etcd', mesh.etcd.join(','), '--prefix', mesh.prefix, '--listen', '127.0.0.1', '--port', '0', '--log-level', 'warn', '--workers', '2', '--backlog', '777'], 0);
  t.teardown(() => killAll(r));
  const port = await announcedPort(r);
  // Send-Q of a listening socket is its backlog.
  const ss = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
  t.match(ss, /^LISTEN\s+\d+\s+777\s/m, `the listening socket queues 777 (${ss.trim()})`);
  for (const [v, why] of [['lots', /--backlog must be a non-negative integer/], ['70000', /--backlog must be at most 65535/], ['0', /listen\.backlog/]] as const) {
    const bad = spawnRouter([bin, 'router', '--etcd', mesh.etcd.join(','), '--prefix', mesh.prefix, '--port', '0', '--backlog', v], 0);
    t.teardown(() => killAll(bad));
    const code = await bad.exited;
    t.equal(code, 1, `--backlog ${v}: exit 1`);
    t.match(bad.out(), why, `--backlog ${v}: says why (${bad.out().trim().split('\n').at(-1)})`);
  }
});
