export { buildRouter, type BuildRouterOptions, type WarmpoolRouter } from './app.js';
export { startRouter, applyHeapGrowingPercent, type StartRouterOptions, type RunningRouter } from './start.js';
export {
  routerConfigSchema, parseRouterConfig, routerConfig, routerConfigFromEnv,
  type RouterConfig, type RouterConfigInput, type ConfigProblem,
} from './config.js';
export { RouterError, ROUTER_ERRORS, httpErrorOf, type RouterErrorCode } from './errors.js';
export { SESSION_COOKIE } from './request-parsing.js';
export { retryAfterSec } from './boot-eta.js';
export { WaitQueue } from './wait-queue.js';
export { startRouterCluster, isClusterPrimary, workerCount, type RouterCluster, type RouterClusterOptions } from './cluster.js';
