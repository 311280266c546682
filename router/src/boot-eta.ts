import { isStarting, typicalStages, type InstanceRecord, type ServiceSpec } from '@warmpool/registry';

/** When no boot has been measured yet and no timeout is known. */
const FALLBACK_RETRY_SEC = 5;

/**
 * Seconds until a client that got no instance should retry: when instances are starting,
 * the time until the one at the client's queue position is expected to be ready, from the
 * median measured start of this service's instances (every timed stage: pull, container
 * creation, boot, warm-up; bootMs alone for records without stages), else its boot timeout
 * plus its warm-up timeouts. Pure: the router passes the cache's instances and its clock.
 */
export function retryAfterSec(
  instances: readonly InstanceRecord[],
  spec: ServiceSpec | undefined,
  now: number,
  position = 0,
): number {
  const warmupSec = (spec?.warmup ?? []).reduce((a, w) => a + w.timeoutSec, 0);
  const measured = typicalStages(instances).startMs;
  const typicalMs = measured ?? (spec ? (spec.bootTimeoutSec + warmupSec) * 1000 : FALLBACK_RETRY_SEC * 1000);
  const etas = instances
    .filter((i) => isStarting(i.state))
    .map((i) => Math.max(0, i.createdAt + typicalMs - now))
    .sort((a, b) => a - b);
  if (etas.length === 0) return FALLBACK_RETRY_SEC;
  const eta = etas[Math.min(position, etas.length - 1)]!;
  const cap = spec ? spec.bootTimeoutSec + warmupSec : 3600;
  return Math.min(Math.max(1, Math.ceil(eta / 1000)), Math.max(1, Math.ceil(cap)));
}
