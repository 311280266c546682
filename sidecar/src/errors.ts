/** Errors of the sidecar: a stable code, the HTTP status it maps to, a cause. */
const brand = Symbol.for('warmpool.error');

export type SidecarErrorCode =
  | 'WARMPOOL_FORBIDDEN'
  | 'WARMPOOL_APP_UNAVAILABLE'
  | 'WARMPOOL_NOT_FOUND'
  | 'WARMPOOL_INVALID_CONFIG';

const STATUS: Record<SidecarErrorCode, number> = {
  WARMPOOL_FORBIDDEN: 403,
  WARMPOOL_APP_UNAVAILABLE: 502,
  WARMPOOL_NOT_FOUND: 404,
  WARMPOOL_INVALID_CONFIG: 500,
};

export class SidecarError extends Error {
  readonly code: SidecarErrorCode;
  readonly statusCode: number;
  readonly retryable: boolean;
  readonly [brand] = true;
  constructor(code: SidecarErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SidecarError';
    this.code = code;
    this.statusCode = STATUS[code];
    this.retryable = opts.retryable ?? false;
  }
  static is(err: unknown): err is SidecarError {
    return err instanceof SidecarError || (typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true && 'statusCode' in err);
  }
  /** The JSON body every sidecar error answers with. */
  toBody(): string {
    return JSON.stringify({ error: { code: this.code, message: this.message } });
  }
}
