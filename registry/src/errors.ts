/** Errors of the registry package: a stable code, a cause, and whether a retry may help. */
const brand = Symbol.for('warmpool.error');

export type RegistryErrorCode =
  | 'WARMPOOL_REGISTRY_UNAVAILABLE'
  | 'WARMPOOL_REGISTRY_CORRUPT_RECORD'
  | 'WARMPOOL_INVALID_SERVICE'
  | 'WARMPOOL_LEASE_LOST'
  | 'WARMPOOL_REGISTRY_CLOSED'
  | 'WARMPOOL_INVALID_CONFIG';

export class WarmpoolError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly [brand] = true;
  constructor(code: string, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'WarmpoolError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
  /** Works across duplicate installs of the package. */
  static is(err: unknown): err is WarmpoolError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true;
  }
}

export class RegistryError extends WarmpoolError {
  declare readonly code: RegistryErrorCode;
  constructor(code: RegistryErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(code, message, opts);
    this.name = 'RegistryError';
  }
}

export const unavailable = (cause: unknown): RegistryError =>
  new RegistryError('WARMPOOL_REGISTRY_UNAVAILABLE', `registry unavailable: ${(cause as Error)?.message ?? String(cause)}`, {
    cause,
    retryable: true,
  });
