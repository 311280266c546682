import { Command, Option } from 'commander';
import { CliError } from './commands.js';

/** Registry flags as parsed by program.ts (kept structural to avoid an import cycle). */
interface RegistryFlags {
  etcd?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdUser?: string; consul?: string; prefix: string;
}

function int(name: string, max?: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new CliError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    if (max !== undefined && n > max) throw new CliError(`${name} must be at most ${max}, got ${n}`);
    return n;
  };
}

function workersArg(v: string): number | 'auto' {
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`--workers must be a positive integer or "auto", got ${JSON.stringify(v)}`);
  return n;
}

function hostPort(name: string) {
  return (v: string): { host: string; port: number } => {
    const m = /^(.+):(\d{1,5})$/.exec(v);
    if (!m || Number(m[2]) > 65535) throw new CliError(`${name} must be HOST:PORT, got ${JSON.stringify(v)}`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  };
}

async function storeConfig(o: RegistryFlags) {
  const { storeConfigFrom } = await import('@warmpool/registry');
  return storeConfigFrom({ ...o, etcdPassword: process.env.WARMPOOL_ETCD_PASSWORD });
}

/** Keeps a daemon running until SIGINT/SIGTERM, then closes it (bounded). */
function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = (): void => {
      setTimeout(() => process.exit(1), 15_000).unref();
      close().then(resolve, (err: unknown) => {
        process.stderr.write(`warmpool: error while stopping: ${(err as Error).message}\n`);
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function routerCommand(): Command {
  return new Command('router')
    .description('run a router: sessions API and the streaming proxy')
    .addOption(new Option('--listen <host>', 'address to listen on').env('WARMPOOL_ROUTER_HOST').default('0.0.0.0'))
    .addOption(new Option('--port <port>', 'port to listen on').env('WARMPOOL_ROUTER_PORT').default(8080).argParser(int('--port')))
    .addOption(new Option('--backlog <n>', 'connections the kernel queues before the router accepts them (default 4096, capped by net.core.somaxconn)').env('WARMPOOL_ROUTER_BACKLOG').argParser(int('--backlog', 65535)))
    .addOption(new Option('--default-service <name>', 'claim implicitly for requests without a session').env('WARMPOOL_DEFAULT_SERVICE'))
    .addOption(new Option('--admin-token <token>', 'bearer token for /v1/services*').env('WARMPOOL_ADMIN_TOKEN'))
    .addOption(new Option('--max-wait <sec>', 'upper bound of ?wait=').env('WARMPOOL_MAX_WAIT_SEC').argParser(int('--max-wait')))
    .addOption(new Option('--buffer-response-bytes <n>', 'responses with a Content-Length up to this size are read whole, then written at once (0: stream everything)').env('WARMPOOL_BUFFER_RESPONSE_BYTES').argParser(int('--buffer-response-bytes', 1024 * 1024)))
    .addOption(new Option('--consul-agent <host:port>', 'register this router as service warmpool-router in the local Consul agent').env('WARMPOOL_CONSUL_AGENT').argParser(hostPort('--consul-agent')))
    .addOption(new Option('--advertise <host>', 'address other hosts reach this router at (Consul registration)').env('WARMPOOL_ADVERTISE'))
    .addOption(new Option('--workers <n|auto>', 'router processes sharing the port (auto: one per CPU)').env('WARMPOOL_ROUTER_WORKERS').default(1).argParser(workersArg))
    .addOption(new Option('--heap-growing-percent <n>', 'V8 heap growth past the live data before the next full collection (0: V8\'s own; default 50)').env('WARMPOOL_ROUTER_HEAP_GROWING_PERCENT').argParser(int('--heap-growing-percent', 300)))
    .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug').env('WARMPOOL_LOG_LEVEL').default('info'))
    .action(async (o: RegistryFlags & {
      listen: string; port: number; backlog?: number; defaultService?: string; adminToken?: string; maxWait?: number; workers: number | 'auto'; bufferResponseBytes?: number; heapGrowingPercent?: number;
      consulAgent?: { host: string; port: number }; advertise?: string; logLevel: string;
    }) => {
      const { startRouter, parseRouterConfig, isClusterPrimary, startRouterCluster, workerCount } = await import('@warmpool/router');
      const parsed = parseRouterConfig({
        registry: { prefix: o.prefix },
        listen: { host: o.listen, port: o.port, ...(o.backlog !== undefined ? { backlog: o.backlog } : {}) },
        ...(o.defaultService ? { defaultService: o.defaultService } : {}),
        ...(o.adminToken ? { adminToken: o.adminToken } : {}),
        ...(o.maxWait !== undefined ? { wait: { maxSec: o.maxWait, defaultSec: Math.min(30, o.maxWait) } } : {}),
        ...(o.bufferResponseBytes !== undefined ? { proxy: { bufferResponseBytes: o.bufferResponseBytes } } : {}),
        ...(o.heapGrowingPercent !== undefined ? { heapGrowingPercent: o.heapGrowingPercent } : {}),
        logLevel: o.logLevel,
        workers: o.workers,
      });
      if (!parsed.ok) throw new CliError(`invalid router settings:\n${parsed.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
      const { isWorker } = (await import('node:cluster')).default;
      // Checked here, before any worker is forked: a bad registry setting is one message and
      // a prompt exit, not one per worker.
      const store = await storeConfig(o);
      // Several workers: this process forks them (each re-runs this command) and supervises.
      // A worker that dies makes the Consul check look again at once (below), so a router
      // whose workers are all down turns critical without waiting for the next TTL pass.
      let recheck: (() => void) | undefined;
      const router = isClusterPrimary(parsed.config.workers)
        ? await startRouterCluster({ config: parsed.config, onWorkersChange: () => recheck?.() })
        : await startRouter({ config: parsed.config, store });
      if (isWorker) {
        // The primary registers with Consul and prints; a worker only serves until told to stop.
        await untilSignal(() => router.close());
        return;
      }
      let catalog: { close(): Promise<void> } | undefined;
      if (o.consulAgent) {
        const { ConsulCatalog } = await import('@warmpool/registry/consul-catalog');
        const c = new ConsulCatalog({ host: o.consulAgent.host, port: o.consulAgent.port });
        // The check follows the router's own /readyz (any worker: they share the port), so
        // Consul DNS never names a router that cannot serve: passing when ready, warning
        // when degraded (registry link down: established sessions still served, new ones
        // get 503), critical otherwise.
        const probeHost = o.listen === '0.0.0.0' ? '127.0.0.1' : o.listen === '::' ? '[::1]' : o.listen.includes(':') ? `[${o.listen}]` : o.listen;
        const probe = async (): Promise<{ status: 'passing' | 'warning' | 'critical'; note: string }> => {
          const res = await fetch(`http://${probeHost}:${router.port}/readyz`, { signal: AbortSignal.timeout(2000) });
          const body = (await res.json().catch(() => ({}))) as { status?: string; registry?: string; disconnectedSec?: number };
          if (!res.ok) return { status: 'critical', note: `router not ready: HTTP ${res.status}, registry ${body.registry ?? 'unknown'}` };
          if (body.status === 'degraded') {
            return { status: 'warning', note: `router degraded: registry link down for ${body.disconnectedSec ?? '?'} s; established sessions served, new sessions get 503` };
          }
          return { status: 'passing', note: 'router ready' };
        };
        c.addRouter(`${o.advertise ?? '127.0.0.1'}-${router.port}`, o.advertise ?? (o.listen === '0.0.0.0' ? '127.0.0.1' : o.listen), router.port, probe);
        recheck = () => c.recheck();
        catalog = c;
      }
      process.stdout.write(`${JSON.stringify({ msg: 'router listening', url: router.url, port: router.port, workers: workerCount(parsed.config.workers) })}\n`);
      await untilSignal(async () => {
        await catalog?.close();
        await router.close();
      });
    });
}

/**
 * `warmpool router` (here) and, for --help listings, `warmpool agent` / `warmpool sidecar`,
 * which program.ts hands to their packages before parsing (they read their own settings).
 */
export function daemonCommands(): Command[] {
  return [
    routerCommand(),
    new Command('agent').description('run the host agent (see agent/README.md for its settings)'),
    new Command('sidecar').description('run a sidecar (configured by WARMPOOL_* variables; see sidecar/README.md)'),
  ];
}
