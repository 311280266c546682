import { spawn } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Registry, parseServiceSpec, type HostSession } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, freePort, repoRoot, startEtcd } from '../src/index.js';
import { emit, round } from './stats.js';
import { cpuMs, startNginx, startServer, wrk, type Child, type WrkResult } from './router-servers.js';

/**
 * Starts `warmpool router` (router/dist/src/main.js) as its own process, with `nodeArgs`
 * (Node/V8 flags) before the script; resolves when /readyz is 200, rejects at once if it exits.
 */
export async function startRouterProcess(endpoints: string[], prefix: string, env: Record<string, string> = {}, readyTimeoutMs = 20_000, nodeArgs: string[] = []): Promise<Child> {
  const port = await freePort();
  const proc = spawn(process.execPath, [...nodeArgs, path.join(repoRoot, 'router/dist/src/main.js')], {
    env: {
      ...process.env, WARMPOOL_ETCD: endpoints.join(','), WARMPOOL_PREFIX: prefix,
      WARMPOOL_ROUTER_HOST: '127.0.0.1', WARMPOOL_ROUTER_PORT: String(port), WARMPOOL_LOG_LEVEL: 'warn', ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { if (err.length < 20_000) err += d.toString(); });
  const stop = (): Promise<void> => new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
  });
  const exited = new Promise<never>((_, reject) => proc.once('exit', (code, signal) => reject(new Error(`router exited (${code ?? signal}): ${err}`))));
  exited.catch(() => undefined);
  try {
    await Promise.race([exited, eventually(async () => {
      if (proc.exitCode !== null) return false;
      return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
    }, { timeoutMs: readyTimeoutMs, intervalMs: 50, what: 'router ready' })]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, proc, stop };
}

/**
 * router-proxy: an established session's requests through the router (a separate process,
 * as `warmpool router` runs) next to, in the same run, the upstream directly, a bare Node
 * proxy with keep-alive, and nginx (Debian, one worker, upstream keep-alive); then the router
 * with one worker process per CPU next to nginx with `worker_processes auto`. Throughput
 * with wrk at 32 connections; added latency at 1 connection (router minus direct).
 * Rounds in alternating order, best of each (the machine is shared: single windows swing).
 * CPU time per request of each proxy process is printed too. Args: [seconds (5)]
 * [connections (32)] [rounds (3)].
 */
export async function run(args: string[]): Promise<void> {
  const seconds = Number(args[0] ?? 5);
  const connections = Number(args[1] ?? 32);
  const rounds = Number(args[2] ?? 3);
  const started: Child[] = [];
  const etcd = await startEtcd();
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const prefix = `/bench-${randomBytes(4).toString('hex')}/`;
  const agent = new Registry(store, { prefix });
  let host: HostSession | undefined;
  try {
    const upstream = await startServer('upstream');
    started.push(upstream);
    const target = `127.0.0.1:${upstream.port}`;
    const spec = parseServiceSpec({ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 0, session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 } });
    if (!spec.ok) throw new Error('bad spec');
    await agent.putService(spec.spec);
    await agent.clusterSecret();
    host = await agent.openHost({ id: 'bench-host', address: '127.0.0.1', capacity: { instances: 10, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 'bench' }, 30);
    await host.putInstance({ id: 'bench-1', service: 'chatbot', host: 'bench-host', state: 'ready', address: target, containerId: '', slot: null, createdAt: Date.now(), readyAt: Date.now(), bootMs: 1 });

    const router = await startRouterProcess(etcd.endpoints, prefix);
    started.push(router);
    // The same router with one worker process per CPU (WARMPOOL_ROUTER_WORKERS=auto), against
    // nginx with `worker_processes auto` (Debian's default): the per-VM figure.
    const workers = availableParallelism();
    const routerN = await startRouterProcess(etcd.endpoints, prefix, { WARMPOOL_ROUTER_WORKERS: 'auto' });
    started.push(routerN);
    const claim = await eventually(async () => {
      const r = await fetch(`http://127.0.0.1:${router.port}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
      return r.status === 201 ? ((await r.json()) as { sessionId: string }) : false;
    }, { timeoutMs: 10_000, what: 'session' });
    const bare = await startServer('bare-proxy', target);
    started.push(bare);
    const nginx = await startNginx(target);
    started.push(nginx);
    const nginxN = await startNginx(target, 'auto');
    started.push(nginxN);
    emit({ bench: 'router-proxy', phase: 'setup', sessionId: claim.sessionId });

    const path1 = '/v1/chat/completions';
    // pid: the process whose CPU time a request costs (nginx: master + worker).
    const variants: Record<string, { url: string; pid: number; headers?: Record<string, string> }> = {
      direct: { url: `http://127.0.0.1:${upstream.port}${path1}`, pid: upstream.proc.pid! },
      bareProxy: { url: `http://127.0.0.1:${bare.port}${path1}`, pid: bare.proc.pid! },
      nginx: { url: `http://127.0.0.1:${nginx.port}${path1}`, pid: nginx.proc.pid! },
      router: { url: `http://127.0.0.1:${router.port}/v1/sessions/${claim.sessionId}/proxy${path1}`, pid: router.proc.pid! },
      routerHeader: { url: `http://127.0.0.1:${router.port}${path1}`, pid: router.proc.pid!, headers: { 'X-Warmpool-Session': claim.sessionId } },
      routerWorkers: { url: `http://127.0.0.1:${routerN.port}/v1/sessions/${claim.sessionId}/proxy${path1}`, pid: routerN.proc.pid! },
      nginxWorkers: { url: `http://127.0.0.1:${nginxN.port}${path1}`, pid: nginxN.proc.pid! },
    };
    const cpuPerReq: Record<string, number> = {};
    const best = (into: Record<string, WrkResult>, name: string, r: WrkResult, better: (a: WrkResult, b: WrkResult) => boolean): void => {
      const prev = into[name];
      if (!prev || better(r, prev)) into[name] = r;
    };
    const tput: Record<string, WrkResult> = {};
    const lat: Record<string, WrkResult> = {};
    for (let rnd = 0; rnd < rounds; rnd++) {
      const order = Object.keys(variants);
      if (rnd % 2 === 1) order.reverse();
      for (const name of order) {
        const v = variants[name]!;
        // Warm-up (JIT, pools; a multi-worker router warms each worker).
        await wrk(v.url, { connections, seconds: 2, ...(v.headers ? { headers: v.headers } : {}) });
        const cpu0 = cpuMs(v.pid);
        const r = await wrk(v.url, { connections, seconds, ...(v.headers ? { headers: v.headers } : {}) });
        // CPU microseconds the proxy itself spent per request: steadier than req/s on a shared machine.
        const cpuUs = round(((cpuMs(v.pid) - cpu0) * 1000) / Math.max(1, r.requests), 1);
        cpuPerReq[name] = Math.min(cpuPerReq[name] ?? Infinity, cpuUs);
        best(tput, name, r, (a, b) => a.rps > b.rps);
        emit({ bench: 'router-proxy', phase: 'throughput', round: rnd, variant: name, connections, rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpuUsPerReq: cpuUs, errors: r.errors });
        const l = await wrk(v.url, { connections: 1, seconds: Math.max(2, Math.round(seconds / 2)), ...(v.headers ? { headers: v.headers } : {}) });
        best(lat, name, l, (a, b) => a.p50Ms < b.p50Ms);
        emit({ bench: 'router-proxy', phase: 'latency', round: rnd, variant: name, connections: 1, rps: l.rps, p50Ms: l.p50Ms, p99Ms: l.p99Ms, errors: l.errors });
      }
    }
    const errors = [...Object.values(tput), ...Object.values(lat)].reduce((a, r) => a + r.errors, 0);
    emit({
      bench: 'router-proxy',
      summary: true,
      connections,
      seconds,
      rounds,
      routerRps: tput.router!.rps,
      routerHeaderRps: tput.routerHeader!.rps,
      bareProxyRps: tput.bareProxy!.rps,
      nginxRps: tput.nginx!.rps,
      directRps: tput.direct!.rps,
      vsBareProxy: round(tput.router!.rps / tput.bareProxy!.rps),
      vsNginx: round(tput.router!.rps / tput.nginx!.rps),
      vsDirect: round(tput.router!.rps / tput.direct!.rps),
      workers,
      routerWorkersRps: tput.routerWorkers!.rps,
      nginxWorkersRps: tput.nginxWorkers!.rps,
      workersVsBareProxy: round(tput.routerWorkers!.rps / tput.bareProxy!.rps),
      workersVsNginx: round(tput.routerWorkers!.rps / tput.nginx!.rps),
      workersVsNginxWorkers: round(tput.routerWorkers!.rps / tput.nginxWorkers!.rps),
      routerP50Ms: lat.router!.p50Ms,
      routerP99Ms: lat.router!.p99Ms,
      directP50Ms: lat.direct!.p50Ms,
      directP99Ms: lat.direct!.p99Ms,
      addedP50Ms: round(lat.router!.p50Ms - lat.direct!.p50Ms),
      addedP99Ms: round(lat.router!.p99Ms - lat.direct!.p99Ms),
      bareAddedP50Ms: round(lat.bareProxy!.p50Ms - lat.direct!.p50Ms),
      nginxAddedP50Ms: round(lat.nginx!.p50Ms - lat.direct!.p50Ms),
      cpuUsPerReq: cpuPerReq,
      errors,
      targets: { vsBareProxy: 1.0, vsNginx: 0.45 },
    });
  } finally {
    await Promise.all(started.map((c) => c.stop()));
    await host?.close({ revoke: true }).catch(() => undefined);
    await agent.close();
    await store.close();
    await etcd.stop();
  }
}
