// Entry point of the `warmpool/sidecar` image (bundled with esbuild by deploy/images/build.sh):
// reads WARMPOOL_* variables and starts the sidecar. Wiring only; see sidecar.ts.
import { sidecarConfigFromEnv } from './config.js';
import { SidecarError } from './errors.js';
import { jsonLogger } from './logger.js';
import { startSidecar } from './sidecar.js';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = sidecarConfigFromEnv(process.env);
  } catch (err) {
    if (SidecarError.is(err)) { process.stderr.write(`warmpool-sidecar: ${err.message}\n`); process.exit(2); }
    throw err;
  }
  const log = jsonLogger({ component: 'sidecar', instance: cfg.instanceId });
  const sidecar = await startSidecar(cfg, { log });
  // As PID 1 in a container node has no default signal handlers: stop promptly ourselves.
  const stop = (signal: string): void => {
    log('info', `${signal}: stopping`);
    void sidecar.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`warmpool-sidecar: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
