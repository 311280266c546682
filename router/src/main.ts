// `node router/dist/src/main.js`: the router from WARMPOOL_* environment variables alone
// (the `warmpool router` subcommand calls startRouter with flags merged in). Wiring only.
import { pathToFileURL } from 'node:url';
import { parseRouterConfig, routerConfigFromEnv } from './config.js';
import { pino } from 'pino';
import { isClusterPrimary, startRouterCluster } from './cluster.js';
import { startRouter } from './start.js';

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const parsed = parseRouterConfig(routerConfigFromEnv(env));
  if (!parsed.ok) {
    for (const p of parsed.problems) console.error(`router: ${p.path}: ${p.message}`);
    process.exitCode = 2;
    return;
  }
  const { config } = parsed;
  if (isClusterPrimary(config.workers)) {
    const logger = pino({ level: config.logLevel, base: { component: 'router' } });
    const c = await startRouterCluster({ config, logger });
    logger.info({ port: c.port, workers: c.workers, pids: c.workerPids() }, 'router listening');
    const stopAll = (): void => {
      c.close().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGTERM', stopAll);
    process.once('SIGINT', stopAll);
    return;
  }
  const router = await startRouter({ config });
  const stop = (): void => {
    router.close().then(() => process.exit(0), () => process.exit(1));
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error('router:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
