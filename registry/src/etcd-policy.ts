/**
 * The etcd client's retry and circuit-breaker policy, chosen for a fleet (private helper of
 * etcd-kv.ts). What etcd3 does by default, and why we do not:
 *
 * - Per member, a breaker that opens after 3 consecutive recoverable errors and then refuses
 *   EVERY call for 5 s. Deadline-exceeded counts as recoverable, so an etcd that is merely
 *   slow (a 500-host fleet writing at once) turns into a 5 s outage for that client: measured
 *   at 20,000 instances, 3,780 writes refused while the fleet was written. We open a member's
 *   breaker only on errors that say the member is unreachable (gRPC UNAVAILABLE), only when
 *   there is another member to go to, and try it again after 1 s.
 * - 3 retries of any recoverable error at once: a slow etcd receives up to 4 times the load.
 *   We retry once, after 50-500 ms of jittered backoff, and only when the call did not reach a
 *   member (UNAVAILABLE); a deadline exceeded is returned to the caller, whose own loop backs
 *   off (cache re-lists, host-lease recovery, agents' actions: all jittered, doubling delays).
 *
 * Every call keeps its deadline (EtcdKvOptions.requestTimeoutMs); streams (watch, keep-alive)
 * are not governed by these policies.
 */
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, noop, retry } from 'cockatiel';
import { GRPCUnavailableError } from 'etcd3';
import type { IOptions } from 'etcd3';

type FaultHandling = NonNullable<IOptions['faultHandling']>;

/** The member could not be reached at all (nothing was executed there). */
const unreachable = (err: Error): boolean => err instanceof GRPCUnavailableError;

export function etcdFaultHandling(endpointCount: number): Pick<FaultHandling, 'host' | 'global'> {
  return {
    host: () => (endpointCount > 1
      ? circuitBreaker(handleWhen(unreachable), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(5) })
      : noop),
    global: retry(handleWhen(unreachable), {
      maxAttempts: 1,
      backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }),
    }),
  };
}
