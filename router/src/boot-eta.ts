import type { InstanceRecord, ServiceSpec } from '@warmpool/registry';

/** When no boot has been measured yet and no timeout is known. */
const FALLBACK_RETRY_SEC = 5;

/**
 * Seconds until a client that got no instance should retry: when boots are under way, the
 * time until the boot at the client's queue position is expected to finish, from the
 * median measured boot time of this service's instances (bootMs of ready ones), else its
 * boot timeout. Pure: the router passes the cache's instances and its clock.
 */
export function retryAfterSec(
  instances: readonly InstanceRecord[],
  spec: ServiceSpec | undefined,
  now: number,
  position = 0,
): number {
  const measured = instances.map((i) => i.bootMs).filter((b): b is number => typeof b === 'number' && b > 0).sort((a, b) => a - b);
  const typicalMs = measured.length
    ? measured[Math.floor(measured.length / 2)]!
    : spec ? spec.bootTimeoutSec * 1000 : FALLBACK_RETRY_SEC * 1000;
  const etas = instances
    .filter((i) => i.state === 'booting')
    .map((i) => Math.max(0, i.createdAt + typicalMs - now))
    .sort((a, b) => a - b);
  if (etas.length === 0) return FALLBACK_RETRY_SEC;
  const eta = etas[Math.min(position, etas.length - 1)]!;
  const cap = spec ? spec.bootTimeoutSec : 3600;
  return Math.min(Math.max(1, Math.ceil(eta / 1000)), Math.max(1, Math.ceil(cap)));
}
