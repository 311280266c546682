import cluster from 'node:cluster';
import v8 from 'node:v8';
import { pino, type Logger } from 'pino';
import { clusterMetricsRenderer, listenPort } from './cluster.js';
import { CACHED_KINDS, Registry, WarmpoolError, openStore, type KvStore, type StoreConfig } from '@warmpool/registry';
import { buildRouter, type WarmpoolRouter } from './app.js';
import { localUrl, routerConfig, type RouterConfig, type RouterConfigInput } from './config.js';

export interface StartRouterOptions {
  config?: RouterConfigInput | RouterConfig;
  /** How to reach the registry; default: etcd at config.registry.endpoints. */
  store?: StoreConfig;
  /** An already open store (tests, embedding); the router closes it on close(). */
  kvStore?: KvStore;
  logger?: Logger;
}

export interface RunningRouter {
  app: WarmpoolRouter;
  registry: Registry;
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  /** Stops accepting, ends waits, closes upstream sockets and the registry. Idempotent. */
  close(): Promise<void>;
}

/**
 * Sets V8's heap growing factor for this process: after a full collection the heap may grow
 * to (1 + percent / 100) x what survived before the next one. 0 leaves V8's own factor
 * (between 1.1 and 4 by its heuristics). Process-wide; takes effect at the next collection
 * (V8 reads the flag each time it sets the heap's limit). Throws on a value outside 0..300.
 */
export function applyHeapGrowingPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 300) throw new RangeError(`heapGrowingPercent must be an integer in 0..300, got ${percent}`);
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/** A router wired to the registry and listening: what `warmpool router` runs. */
export async function startRouter(opts: StartRouterOptions = {}): Promise<RunningRouter> {
  const config = routerConfig(opts.config as RouterConfigInput);
  applyHeapGrowingPercent(config.heapGrowingPercent);
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { component: 'router', ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}) } });
  const store = opts.kvStore ?? await openStore(opts.store ?? { backend: 'etcd', endpoints: config.registry.endpoints });
  const registry = new Registry(store, {
    prefix: config.registry.prefix,
    // Warm slots are the agents' business: a router neither lists nor watches them.
    cache: { kinds: CACHED_KINDS.filter((k) => k !== 'slots'), onError: (err) => logger.warn({ err }, 'registry cache') },
  });
  const app = buildRouter({ registry, config, logger, defaultMetrics: true });
  // A worker of a multi-process router answers /metrics for all workers.
  const clusterRender = clusterMetricsRenderer(app.warmpool.metrics.registry);
  if (clusterRender) app.warmpool.metrics.render = clusterRender;
  const port0 = listenPort(config);
  try {
    await app.listen({ host: config.listen.host, port: port0, backlog: config.listen.backlog });
  } catch (err) {
    await app.close().catch(() => undefined);
    await registry.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw listenError(err, config.listen.host, port0);
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
  logger.info({ port, registry: store.backend, defaultService: config.defaultService ?? null }, 'router listening');
  let closing: Promise<void> | undefined;
  return {
    app,
    registry,
    port,
    url: localUrl(config.listen.host, port),
    close() {
      closing ??= (async () => {
        await app.close();
        await registry.close().catch(() => undefined);
        await store.close().catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** A failed listen as an operator reads it: which address, and why. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  const why = code === 'EADDRINUSE' ? 'the address is in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such address on this machine' : undefined;
  return why ? new WarmpoolError('WARMPOOL_LISTEN_FAILED', `router: cannot listen on ${host}:${port}: ${why}`, { cause: err }) : err;
}
