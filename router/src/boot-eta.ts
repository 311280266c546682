import { isStarting, typicalStages, type InstanceRecord, type ServiceSpec } from '@warmpool/registry';

/** When no boot has been measured yet and no timeout is known. */
const FALLBACK_RETRY_SEC = 5;

/**
 * Seconds until a client that got no instance should retry, for the client at `position`
 * in this router's queue (0 = first). Each starting instance is expected ready at its start
 * + the median measured start of this service's instances (every timed stage: pull,
 * container creation, boot, warm-up; bootMs alone for records without stages), else its
 * boot timeout plus its warm-up timeouts. With n instances starting, the client at position
 * p gets the (p mod n)-th to be ready, in round floor(p / n): each earlier round adds one
 * start time. With demand-driven boots every waiter has a boot of its own (n > p) unless
 * the fleet is full. Pure: the router passes the cache's instances and its clock.
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
  // Nothing starting (the fleet is full): the next instance comes from a session that ends,
  // then one start; a start time per place in the queue is the best figure there is.
  if (etas.length === 0) return measured !== null ? Math.max(1, Math.ceil((typicalMs * (1 + position)) / 1000)) : FALLBACK_RETRY_SEC;
  const rounds = Math.floor(position / etas.length);
  const eta = etas[position % etas.length]! + rounds * typicalMs;
  const cap = (spec ? spec.bootTimeoutSec + warmupSec : 3600) * (rounds + 1);
  return Math.min(Math.max(1, Math.ceil(eta / 1000)), Math.max(1, Math.ceil(cap)));
}
