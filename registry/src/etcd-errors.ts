/**
 * Maps errors of the etcd3 client onto RegistryError, in one place. Private helper of
 * etcd-kv.ts (the only files that know etcd3's error classes).
 */
import {
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
} from 'etcd3';
import { RegistryError, WarmpoolError, unavailable } from './errors.js';

/** What the caller was doing, for the message ("txn on /warmpool/x"). */
export function mapEtcdError(err: unknown, what: string): WarmpoolError {
  if (WarmpoolError.is(err)) return err;
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof EtcdLeaseInvalidError) {
    return new RegistryError('WARMPOOL_LEASE_LOST', `${what}: lease not found (expired or revoked)`, { cause: err });
  }
  if (err instanceof EtcdPermissionDeniedError || err instanceof EtcdRoleNotGrantedError) {
    // A configuration problem, not an outage: retrying cannot help.
    return new RegistryError(
      'WARMPOOL_INVALID_CONFIG',
      `${what}: etcd denied permission (${message}); the etcd user needs readwrite on the registry prefix`,
      { cause: err },
    );
  }
  if (
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdUserNotFoundError ||
    err instanceof GRPCUnauthenticatedError
  ) {
    return new RegistryError('WARMPOOL_INVALID_CONFIG', `${what}: etcd authentication failed (${message})`, { cause: err });
  }
  if (err instanceof ClientClosedError) {
    return new RegistryError('WARMPOOL_REGISTRY_CLOSED', `${what}: store is closed`, { cause: err });
  }
  // Network failures, timeouts, leader elections, open circuit breakers: all retryable.
  const e = unavailable(err);
  e.message = `${what}: ${e.message}`;
  return e;
}
