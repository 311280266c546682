// Several router processes on one port (node:cluster), the way a reverse proxy uses every
// core of its VM. Each worker is a complete, independent router (its own registry watch,
// cache and upstream pools): routers are stateless, so N workers behave like N routers
// that share an address. The primary only supervises and answers /metrics for all.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { pino, type Logger } from 'pino';
import { AggregatorRegistry, type Registry as PromRegistry } from 'prom-client';
import { WarmpoolError } from '@warmpool/registry';
import { localUrl, type RouterConfig } from './config.js';

const ASK = 'warmpool:router-metrics?';
const ANSWER = 'warmpool:router-metrics=';

interface Ask { type: typeof ASK; id: number }
interface Answer { type: typeof ANSWER; id: number; text?: string; error?: string }

/** `auto` means one worker per CPU the process may use. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** True in a process that should fork router workers rather than serve itself. */
export function isClusterPrimary(workers: number | 'auto'): boolean {
  return cluster.isPrimary && workerCount(workers) > 1;
}

/**
 * In a worker: /metrics of the whole router (every worker, aggregated by the primary with
 * prom-client's AggregatorRegistry). Undefined outside a cluster.
 */
export function clusterMetricsRenderer(registry: PromRegistry): (() => Promise<string>) | undefined {
  if (!cluster.isWorker) return undefined;
  AggregatorRegistry.setRegistries([registry]);
  // Installs prom-client's worker-side listener (idempotent).
  new AggregatorRegistry();
  let next = 0;
  const pending = new Map<number, { resolve: (t: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  process.on('message', (m: Answer) => {
    if (m?.type !== ANSWER) return;
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.text !== undefined) p.resolve(m.text);
    else p.reject(new Error(`metrics: ${m.error ?? 'no answer'}`));
  });
  return () => new Promise<string>((resolve, reject) => {
    const id = next++;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error('metrics: the router primary did not answer within 10 s'));
    }, 10_000);
    timer.unref();
    pending.set(id, { resolve, reject, timer });
    process.send?.({ type: ASK, id } satisfies Ask);
  });
}

export interface RouterCluster {
  port: number;
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  url: string;
  workers: number;
  /** Live worker pids, for tests and logs. */
  workerPids(): number[];
  /** Stops every worker (SIGTERM, then SIGKILL after graceMs); resolves when all exited. Idempotent. */
  close(): Promise<void>;
}

export interface RouterClusterOptions {
  /** The router's settings: workers (number or auto), listen address, log level. */
  config: RouterConfig;
  logger?: Logger;
  /** Between a worker's unexpected death and its replacement, doubling to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  graceMs?: number;
  /** Called when a worker dies and when a replacement listens (e.g. to update a health check). */
  onWorkersChange?: () => void;
}

/**
 * Set by the primary for workers it forks after the first ones listened: the port they
 * share. With `port: 0` a replacement would otherwise listen on a new port once every
 * worker had died (the shared socket closes with its last worker).
 */
export const WORKER_PORT_ENV = 'WARMPOOL_ROUTER_WORKER_PORT';

/** The port a router process listens on: the primary's, in a worker it forked. */
export function listenPort(config: RouterConfig, env: NodeJS.ProcessEnv = process.env): number {
  const shared = cluster.isWorker ? Number(env[WORKER_PORT_ENV]) : NaN;
  return Number.isInteger(shared) && shared > 0 ? shared : config.listen.port;
}

/**
 * Forks `workers` copies of this process (same script and arguments; they see
 * cluster.isWorker and start a router) and resolves once all listen on the same port.
 * A worker that dies later is replaced after a backoff; one that fails before it ever
 * listened fails the whole start (bad config, port in use), so the service manager sees it.
 */
export function startRouterCluster(opts: RouterClusterOptions): Promise<RouterCluster> {
  const { config } = opts;
  const workers = workerCount(config.workers);
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { component: 'router' } });
  const baseDelay = opts.restartDelayMs ?? 500;
  const maxDelay = opts.maxRestartDelayMs ?? 30_000;
  const graceMs = opts.graceMs ?? 12_000;
  const aggregator = new AggregatorRegistry();
  const live = new Set<Worker>();
  let stopping = false;
  let started = false;
  let port = 0;
  let delay = baseDelay;
  let healthySince = 0;
  let closing: Promise<void> | undefined;

  cluster.on('message', (worker: Worker, m: Ask) => {
    if (m?.type !== ASK) return;
    aggregator.clusterMetrics().then(
      (text) => worker.isConnected() && worker.send({ type: ANSWER, id: m.id, text } satisfies Answer),
      (err: Error) => worker.isConnected() && worker.send({ type: ANSWER, id: m.id, error: err.message } satisfies Answer),
    );
  });

  // Workers accept from the shared socket themselves. With round-robin hand-off from the
  // primary, a connection handed to a worker at the instant it is killed is lost without a
  // reset (the client hangs until its own timeout; measured: one per kill); accepting in
  // the workers leaves the backlog to the survivors and resets only what the dead one held.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  return new Promise<RouterCluster>((resolve, reject) => {
    let listening = 0;
    const fork = (): void => {
      const w = cluster.fork({ WARMPOOL_ROUTER_WORKER: '1', ...(port ? { [WORKER_PORT_ENV]: String(port) } : {}) });
      live.add(w);
      let up = false;
      w.once('listening', (addr) => {
        up = true;
        port = addr.port;
        if (started) opts.onWorkersChange?.();
        if (!started && ++listening === workers) {
          started = true;
          healthySince = Date.now();
          resolve({ port, url: localUrl(config.listen.host, port), workers, workerPids, close });
        }
      });
      w.once('exit', (code, signal) => {
        live.delete(w);
        if (stopping) return;
        if (!started && !up) {
          // A worker that cannot start means none can: report it, stop the rest.
          stopping = true;
          for (const o of live) o.process.kill('SIGKILL');
          reject(new WarmpoolError('WARMPOOL_ROUTER_START_FAILED', `router worker exited before listening (exit code ${code}, signal ${signal}); its own message is above`));
          return;
        }
        // Long healthy: start over from the base delay.
        if (Date.now() - healthySince > 60_000) delay = baseDelay;
        logger.error({ pid: w.process.pid, code, signal, restartInMs: delay, live: live.size }, 'router worker died; replacing it');
        opts.onWorkersChange?.();
        const wait = delay;
        delay = Math.min(maxDelay, delay * 2);
        setTimeout(() => {
          if (stopping) return;
          healthySince = Date.now();
          fork();
        }, wait); // not unref'd: with every worker dead, this timer is what keeps the primary up
      });
    };
    for (let i = 0; i < workers; i++) fork();
  });

  function workerPids(): number[] {
    return [...live].map((w) => w.process.pid).filter((p): p is number => p !== undefined);
  }

  function close(): Promise<void> {
    stopping = true;
    closing ??= Promise.all([...live].map((w) => new Promise<void>((done) => {
      if (w.isDead()) return done();
      w.once('exit', () => done());
      w.process.kill('SIGTERM');
      setTimeout(() => w.process.kill('SIGKILL'), graceMs).unref();
    }))).then(() => undefined);
    return closing;
  }
}
