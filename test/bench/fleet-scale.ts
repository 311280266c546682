import http from 'node:http';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Registry, newSessionId, parseServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, startEtcd } from '../src/index.js';
import { emit, load, round, summarize } from './stats.js';
import { cpuMs, rssMb, startServer, type Child } from './router-servers.js';
import { startRouterProcess } from './router-proxy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const INSTANCES_PER_HOST = 40;
const HOST_PROCESSES = 4;
const CLAIMED = 0.7;
const ACTIVE_WINDOW_MS = 30_000;
/** Claims made elsewhere while the router's CPU is measured (fewer where fewer instances are left). */
const FOLLOW_CLAIMS = 5000;
/** The router's idle CPU is measured over this long (whole periods of its 5 s pool tick). */
const IDLE_WINDOW_MS = 10_000;

/** A process of simulated hosts; `losses()` is the last lease-loss count it printed. */
async function startHosts(endpoints: string[], prefix: string, first: number, count: number, upstream: string): Promise<{ proc: ChildProcess; losses(): number; stop(): void }> {
  const proc = spawn(process.execPath, [path.join(here, 'fleet-hosts.js'), endpoints.join(','), prefix, String(first), String(count), String(INSTANCES_PER_HOST), upstream], { stdio: ['ignore', 'pipe', 'pipe'] });
  let ready = false;
  let losses = 0;
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { if (err.length < 20_000) err += d.toString(); });
  proc.stdout!.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) {
      if (line.startsWith('listening')) ready = true;
      else if (line.startsWith('{')) losses = (JSON.parse(line) as { losses: number }).losses;
    }
  });
  await eventually(() => {
    if (proc.exitCode !== null) throw new Error(`fleet-hosts exited: ${err}`);
    return ready;
  }, { timeoutMs: 600_000, intervalMs: 100, what: 'simulated hosts registered' });
  return { proc, losses: () => losses, stop: () => { proc.kill('SIGKILL'); } };
}

function request(agent: http.Agent, port: number, method: string, p: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Router watch traffic so far, from its /metrics. */
async function watchTraffic(port: number): Promise<{ messages: number; bytes: number }> {
  return {
    messages: await etcdMetric(`http://127.0.0.1:${port}`, 'warmpool_router_registry_watch_messages_total'),
    bytes: await etcdMetric(`http://127.0.0.1:${port}`, 'warmpool_router_registry_watch_bytes_total'),
  };
}

/** Messages etcd sent on all watch streams (to every part watching), from its /metrics. */
async function etcdWatchMessagesSent(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^grpc_server_msg_sent_total\{grpc_method="Watch",grpc_service="etcdserverpb\.Watch"[^}]*\} ([0-9.e+]+)$/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

async function etcdMetric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** One fleet size: etcd, simulated hosts in several processes, one router, 70% claimed. */
async function measure(instances: number): Promise<Record<string, number>> {
  const etcd = await startEtcd();
  const etcdPid = etcd.members[0]!.proc!.pid!;
  const prefix = `/fleet-${randomBytes(3).toString('hex')}/`;
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const elsewhere = new Registry(store, { prefix });
  const children: { stop(): unknown }[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  try {
    const upstream: Child = await startServer('upstream');
    children.push(upstream);
    const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('bad spec');
    await elsewhere.putService(spec.spec);
    await elsewhere.clusterSecret();
    const hostsTotal = Math.max(1, Math.round(instances / INSTANCES_PER_HOST));
    const procs = Math.min(HOST_PROCESSES, hostsTotal);
    const setupStart = Date.now();
    const hostProcs = await Promise.all(Array.from({ length: procs }, (_, p) => {
      const first = Math.floor((hostsTotal * p) / procs);
      const count = Math.floor((hostsTotal * (p + 1)) / procs) - first;
      return startHosts(etcd.endpoints, prefix, first, count, `127.0.0.1:${upstream.port}`);
    }));
    children.push(...hostProcs);
    const registered = hostsTotal * INSTANCES_PER_HOST;
    emit({ bench: 'fleet-scale', phase: 'setup', instances: registered, hosts: hostsTotal, hostProcesses: procs, setupSec: round((Date.now() - setupStart) / 1000, 1) });

    // Router start: wall time and CPU to /readyz over the whole fleet.
    const t0 = Date.now();
    // FLEET_HEAPSNAPSHOT=1: the router writes a V8 heap snapshot (into its working directory)
    // on SIGUSR2, sent once the figures are taken (where its memory goes, by constructor).
    // FLEET_ROUTER_NODE_ARGS: Node/V8 flags for the router process (memory trade-offs).
    const snapshot = process.env.FLEET_HEAPSNAPSHOT === '1';
    const nodeArgs = [...(process.env.FLEET_ROUTER_NODE_ARGS ?? '').split(' ').filter(Boolean), ...(snapshot ? ['--heapsnapshot-signal=SIGUSR2'] : [])];
    const router = await startRouterProcess(etcd.endpoints, prefix, {}, 300_000, nodeArgs);
    children.push(router);
    const routerReadyWallSec = round((Date.now() - t0) / 1000, 2);
    const routerReadyCpuSec = round(cpuMs(router.proc.pid!) / 1000, 2);

    // 70% claimed through the router.
    const nClaims = Math.floor(registered * CLAIMED);
    const sessions: string[] = [];
    const claims = await load(async () => {
      const r = await request(agent, router.port, 'POST', '/v1/sessions', '{"service":"chatbot"}');
      if (r.status !== 201) throw new Error(`claim ${r.status}`);
      sessions.push((JSON.parse(r.body) as { sessionId: string }).sessionId);
    }, nClaims, 16);
    const claim = summarize(claims.latencies);
    // The same without the first 10% of claims (the router's JIT warming up): at 1,000
    // instances those are 70 of 700 claims and set the p99, at 20,000 1,400 of 14,000.
    const claimWarm = summarize(claims.latencies.slice(Math.floor(claims.latencies.length / 10)));
    emit({ bench: 'fleet-scale', phase: 'claims', instances: registered, claims: claim, perSec: claims.perSec, errors: claims.errors });

    // Every session active: one request each (its first keep-alive from this router), then
    // a window of steady traffic spread over all sessions, etcd's CPU measured over it.
    await load(async (i) => {
      const r = await request(agent, router.port, 'GET', `/v1/sessions/${sessions[i]}/proxy/x`);
      if (r.status !== 200) throw new Error(`proxy ${r.status}`);
    }, sessions.length, 16);
    const renewed0 = await etcdMetric(etcd.endpoints[0]!, 'etcd_debugging_lease_renewed_total');
    const etcdCpu0 = cpuMs(etcdPid);
    const windowStart = Date.now();
    const proxied: number[] = [];
    let k = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (Date.now() - windowStart < ACTIVE_WINDOW_MS) {
        const s = performance.now();
        const r = await request(agent, router.port, 'GET', `/v1/sessions/${sessions[k++ % sessions.length]}/proxy/x`);
        if (r.status === 200) proxied.push(performance.now() - s);
      }
    }));
    const windowSec = (Date.now() - windowStart) / 1000;
    const etcdCpuPerSec = round((cpuMs(etcdPid) - etcdCpu0) / 1000 / windowSec, 4);
    const leaseRenewalsPerSec = round(((await etcdMetric(etcd.endpoints[0]!, 'etcd_debugging_lease_renewed_total')) - renewed0) / windowSec, 1);
    const proxy = summarize(proxied);

    // Router follow: CPU of the router per claim made through another registry client, less
    // its own idle CPU (timers: the pool history every 5 s computes over the whole copy,
    // session keep-alives), measured over whole 5 s periods before and after and averaged.
    // No /metrics scrape inside the window: a scrape computes over the copy too.
    const pid = router.proc.pid!;
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const idleRate = async (): Promise<number> => {
      const c0 = cpuMs(pid);
      const t0 = Date.now();
      await sleep(IDLE_WINDOW_MS);
      return (cpuMs(pid) - c0) / (Date.now() - t0);
    };
    await sleep(5000); // what the traffic window left behind (GC, keep-alive rounds) settles
    const idleBefore = await idleRate();
    const follow = Math.min(FOLLOW_CLAIMS, registered - nClaims - 10);
    const traffic0 = await watchTraffic(router.port);
    const etcdSent0 = await etcdWatchMessagesSent(etcd.endpoints[0]!);
    const etcdFollowCpu0 = cpuMs(etcdPid);
    const routerCpu0 = cpuMs(pid);
    const followStart = Date.now();
    const elsewhereClaims = await load(async () => {
      const r = await elsewhere.claim({ service: 'chatbot', sessionId: newSessionId() });
      if (!r.ok) throw new Error(r.reason);
    }, follow, 8);
    await sleep(2000); // the router's watch catches up
    const followCpu = cpuMs(pid) - routerCpu0;
    const etcdFollowCpu = cpuMs(etcdPid) - etcdFollowCpu0;
    const etcdSent1 = await etcdWatchMessagesSent(etcd.endpoints[0]!);
    const followMs = Date.now() - followStart;
    const traffic1 = await watchTraffic(router.port);
    const idleAfter = await idleRate();
    const idleMsPerMs = (idleBefore + idleAfter) / 2;
    const followed = Math.max(1, follow - elsewhereClaims.errors);
    const routerFollowMsPerClaim = round((followCpu - idleMsPerMs * followMs) / followed, 3);
    const routerIdleCpuPct = round(idleMsPerMs * 100, 1);
    const routerIdleCpuPctBefore = round(idleBefore * 100, 1);
    const routerIdleCpuPctAfter = round(idleAfter * 100, 1);
    const watchBytesPerClaim = round((traffic1.bytes - traffic0.bytes) / followed, 1);
    const watchMessagesPerClaim = round((traffic1.messages - traffic0.messages) / followed, 2);
    // etcd's side of the same claims: its CPU over the window (the claims, the fan-out to
    // every watching part: the router, one cache per host process, the claiming client's
    // own; its background work, about 3% of a core, not subtracted) and the watch messages
    // it sent.
    const etcdMsPerClaim = round(etcdFollowCpu / followed, 3);
    const etcdWatchMessagesPerClaim = round((etcdSent1 - etcdSent0) / followed, 2);

    // Where the router's RSS goes (prom-client's process metrics): the V8 heap in use and
    // reserved, and memory outside it (Buffers).
    const routerMetric = (name: string) => etcdMetric(`http://127.0.0.1:${router.port}`, name);
    const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);
    const routerRssMb = rssMb(router.proc.pid!);
    const routerHeapUsedMb = mb(await routerMetric('warmpool_router_nodejs_heap_size_used_bytes'));
    const routerHeapTotalMb = mb(await routerMetric('warmpool_router_nodejs_heap_size_total_bytes'));
    const routerExternalMb = mb(await routerMetric('warmpool_router_nodejs_external_memory_bytes'));
    if (snapshot) {
      router.proc.kill('SIGUSR2');
      await sleep(20_000);
      emit({ bench: 'fleet-scale', phase: 'heapsnapshot', note: 'written by the router into the current directory (Heap.*.heapsnapshot)' });
    }
    const keys = await store.count!(prefix);
    const dbSizeMb = round((await etcdMetric(etcd.endpoints[0]!, 'etcd_mvcc_db_total_size_in_bytes')) / 1024 / 1024, 1);
    const leaseLosses = hostProcs.reduce((a, h) => a + h.losses(), 0);
    const row = {
      instances: registered, hosts: hostsTotal, sessions: sessions.length, leaseLosses, etcdCpuPerSec, leaseRenewalsPerSec,
      routerRssMb, routerHeapUsedMb, routerHeapTotalMb, routerExternalMb, routerReadyCpuSec, routerReadyWallSec,
      claimP50Ms: claim.p50Ms, claimP99Ms: claim.p99Ms, claimWarmP50Ms: claimWarm.p50Ms, claimWarmP99Ms: claimWarm.p99Ms, proxyP50Ms: proxy.p50Ms, proxyP99Ms: proxy.p99Ms,
      routerFollowMsPerClaim, routerIdleCpuPct, routerIdleCpuPctBefore, routerIdleCpuPctAfter, followClaims: followed, watchBytesPerClaim, watchMessagesPerClaim,
      etcdMsPerClaim, etcdWatchMessagesPerClaim, keys, dbSizeMb,
    };
    emit({ bench: 'fleet-scale', phase: 'size', ...row });
    return row;
  } finally {
    agent.destroy();
    for (const c of children.reverse()) await c.stop();
    await elsewhere.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    await etcd.stop();
  }
}

/**
 * fleet-scale: a real etcd, one real router process, and simulated hosts (host lease,
 * instances with pre-granted session leases, a registry watch per process) in 4 processes;
 * 70% of instances claimed through POST /v1/sessions. Per size: lease losses, etcd CPU per
 * second with all sessions active (and lease renewals/s etcd saw), router CPU and wall time
 * to /readyz, router RSS (and its V8 heap used / reserved, memory outside the heap), claim
 * p50/p99 (all claims, and without the first 10%: JIT warm-up) and proxied-request p50/p99, router CPU per claim made
 * elsewhere with the watch messages and bytes it received per such claim (and etcd's CPU and
 * watch messages sent to every watching part per such claim), keys and db size. The summary
 * compares the largest size with the first one, measured in the same run.
 * Args: [sizes (1000,5000,20000)]. Env: FLEET_ROUTER_NODE_ARGS (Node/V8 flags for the router,
 * e.g. to compare heap settings), FLEET_HEAPSNAPSHOT=1 (the router writes a heap snapshot
 * into the working directory once the figures are taken).
 */
export async function run(args: string[]): Promise<void> {
  const sizes = (args[0] ?? '1000,5000,20000').split(',').map(Number).filter((n) => n > 0);
  const rows: Record<string, number>[] = [];
  for (const n of sizes) rows.push(await measure(n));
  const base = rows[0]!;
  const last = rows[rows.length - 1]!;
  emit({
    bench: 'fleet-scale', summary: true, sizes: rows.map((r) => r.instances),
    instances: last.instances, leaseLosses: last.leaseLosses, etcdCpuPerSec: last.etcdCpuPerSec,
    routerRssMb: last.routerRssMb, routerReadyCpuSec: last.routerReadyCpuSec, claimP99Ms: last.claimP99Ms,
    baselineInstances: base.instances, baselineClaimP99Ms: base.claimP99Ms,
    claimP99RatioVs1k: round(last.claimP99Ms! / base.claimP99Ms!, 2),
    claimWarmP99Ms: last.claimWarmP99Ms, baselineClaimWarmP99Ms: base.claimWarmP99Ms, claimWarmP99RatioVs1k: round(last.claimWarmP99Ms! / base.claimWarmP99Ms!, 2),
    routerFollowMsPerClaim: last.routerFollowMsPerClaim,
    watchBytesPerClaim: last.watchBytesPerClaim, watchMessagesPerClaim: last.watchMessagesPerClaim,
  });
}
