import { recentBootsOf, type InstanceRecord, type ServiceSpec } from '@warmpool/registry';

/** When no boot has been measured yet and no timeout is known. */
const FALLBACK_RETRY_SEC = 5;

/**
 * Seconds until a client that got no instance should retry, for the client at `position`
 * in this router's queue (0 = first): the boots under way finish in order (each expected at
 * its start + the median measured boot time of this service's recent instances, pull, boot
 * and warm-up together where recorded; else the boot timeout), the client at position p
 * gets the (p mod n)-th of the n boots, in round floor(p / n): each earlier round adds one
 * boot time. With demand-driven boots every waiter has a boot of its own (n >= p) unless
 * the fleet is full. Pure: the router passes the cache's instances and its clock.
 */
export function retryAfterSec(
  instances: readonly InstanceRecord[],
  spec: ServiceSpec | undefined,
  now: number,
  position = 0,
): number {
  const measured = recentBootsOf(instances).sort((a, b) => a - b);
  const typicalMs = measured.length
    ? measured[Math.floor(measured.length / 2)]!
    : spec ? spec.bootTimeoutSec * 1000 : FALLBACK_RETRY_SEC * 1000;
  const etas = instances
    .filter((i) => i.state === 'booting')
    .map((i) => Math.max(0, i.createdAt + typicalMs - now))
    .sort((a, b) => a - b);
  // Nothing booting (the fleet is full): the next instance comes from a session that ends,
  // then one boot; a boot time per round is the best figure there is.
  if (etas.length === 0) return measured.length ? Math.max(1, Math.ceil((typicalMs * (1 + position)) / 1000)) : FALLBACK_RETRY_SEC;
  const rounds = Math.floor(position / etas.length);
  const eta = etas[position % etas.length]! + rounds * typicalMs;
  const cap = (spec ? spec.bootTimeoutSec : 3600) * (rounds + 1);
  return Math.min(Math.max(1, Math.ceil(eta / 1000)), Math.max(1, Math.ceil(cap)));
}
