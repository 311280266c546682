import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from '@warmpool/registry';
import type { RouterConfig } from './config.js';
import type { SessionDirectory } from './session-directory.js';
import type { SessionClaimer } from './session-claimer.js';
import type { SessionForwarder } from './session-forwarder.js';
import type { RouterMetrics } from './metrics.js';
import type { PoolMonitor } from './pool-monitor.js';

/** What the route modules share; built once by buildRouter. */
export interface RouterContext {
  config: RouterConfig;
  registry: Registry;
  directory: SessionDirectory;
  claimer: SessionClaimer;
  forwarder: SessionForwarder;
  metrics: RouterMetrics;
  /** The fleet's pools over the last hour and their instance-seconds (dashboard, metrics). */
  pools: PoolMonitor;
  log: FastifyBaseLogger;
}
