/** Errors of the agent: a stable code, a cause, and whether a retry may help. */
const brand = Symbol.for('warmpool.error');

export type AgentErrorCode =
  | 'WARMPOOL_INVALID_CONFIG'
  | 'WARMPOOL_DOCKER_UNAVAILABLE'
  | 'WARMPOOL_IMAGE_MISSING'
  | 'WARMPOOL_PULL_FAILED'
  | 'WARMPOOL_CONTAINER_FAILED'
  /** A service asks what this host's config does not allow (host path, host IPC, secret file). */
  | 'WARMPOOL_NOT_ALLOWED'
  /** The pod's network namespace could not be filtered (no root, no nsenter or iptables). */
  | 'WARMPOOL_ISOLATION_FAILED'
  | 'WARMPOOL_ENGINE_TIMEOUT'
  | 'WARMPOOL_AGENT_CLOSED';

export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly retryable: boolean;
  readonly [brand] = true;
  constructor(code: AgentErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AgentError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
  static is(err: unknown): err is AgentError {
    return err instanceof AgentError || (typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true && (err as { name?: unknown }).name === 'AgentError');
  }
}
