import { WarmpoolError } from '@warmpool/registry';

/**
 * Every error the router answers with: a stable code, its HTTP status, and whether a retry
 * may help. The HTTP mapping lives here and nowhere else (`httpErrorOf`): handlers throw or
 * return a RouterError, the error handler and the raw-socket paths call `httpErrorOf`.
 */
export const ROUTER_ERRORS = {
  WARMPOOL_BAD_REQUEST: { status: 400, retryable: false },
  WARMPOOL_BAD_JSON: { status: 400, retryable: false },
  WARMPOOL_INVALID_SESSION_ID: { status: 400, retryable: false },
  WARMPOOL_INVALID_SERVICE: { status: 400, retryable: false },
  WARMPOOL_INVALID_WAIT: { status: 400, retryable: false },
  WARMPOOL_INVALID_IDEMPOTENCY_KEY: { status: 400, retryable: false },
  WARMPOOL_BAD_PATH: { status: 400, retryable: false },
  WARMPOOL_UNAUTHORIZED: { status: 401, retryable: false },
  WARMPOOL_NOT_FOUND: { status: 404, retryable: false },
  WARMPOOL_UNKNOWN_SERVICE: { status: 404, retryable: false },
  WARMPOOL_UNKNOWN_SESSION: { status: 404, retryable: false },
  WARMPOOL_METHOD_NOT_ALLOWED: { status: 405, retryable: false },
  WARMPOOL_REQUEST_TIMEOUT: { status: 408, retryable: true },
  WARMPOOL_SESSION_ENDED: { status: 410, retryable: false },
  WARMPOOL_BODY_TOO_LARGE: { status: 413, retryable: false },
  WARMPOOL_UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  WARMPOOL_HEADERS_TOO_LARGE: { status: 431, retryable: false },
  WARMPOOL_INTERNAL: { status: 500, retryable: false },
  WARMPOOL_INSTANCE_UNREACHABLE: { status: 502, retryable: true },
  WARMPOOL_INSTANCE_BAD_RESPONSE: { status: 502, retryable: false },
  WARMPOOL_NO_READY_INSTANCE: { status: 503, retryable: true },
  WARMPOOL_REGISTRY_UNAVAILABLE: { status: 503, retryable: true },
  WARMPOOL_SHUTTING_DOWN: { status: 503, retryable: true },
  WARMPOOL_UPSTREAM_TIMEOUT: { status: 504, retryable: true },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type RouterErrorCode = keyof typeof ROUTER_ERRORS;

export class RouterError extends WarmpoolError {
  declare readonly code: RouterErrorCode;
  readonly status: number;
  /** Extra response headers (Retry-After, WWW-Authenticate). */
  readonly headers: Record<string, string>;
  constructor(code: RouterErrorCode, message: string, opts: { cause?: unknown; headers?: Record<string, string> } = {}) {
    super(code, message, { cause: opts.cause, retryable: ROUTER_ERRORS[code].retryable });
    this.name = 'RouterError';
    this.status = ROUTER_ERRORS[code].status;
    this.headers = opts.headers ?? {};
  }
}

export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: { error: { code: string; message: string } };
}

/** Fastify's own error codes (parser, limits, routing) and what they mean to our clients. */
const FASTIFY_CODES: Record<string, RouterErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'WARMPOOL_BAD_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'WARMPOOL_BAD_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'WARMPOOL_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'WARMPOOL_BAD_REQUEST',
  FST_ERR_CTP_INVALID_TYPE: 'WARMPOOL_BAD_REQUEST',
  FST_ERR_BAD_URL: 'WARMPOOL_BAD_PATH',
  FST_ERR_ASYNC_CONSTRAINT: 'WARMPOOL_BAD_REQUEST',
};

/** Node's HTTP parser errors (clientError) and upstream socket errors. */
const NODE_CODES: Record<string, RouterErrorCode> = {
  HPE_HEADER_OVERFLOW: 'WARMPOOL_HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'WARMPOOL_REQUEST_TIMEOUT',
  ECONNREFUSED: 'WARMPOOL_INSTANCE_UNREACHABLE',
  ECONNRESET: 'WARMPOOL_INSTANCE_UNREACHABLE',
  EHOSTUNREACH: 'WARMPOOL_INSTANCE_UNREACHABLE',
  ENETUNREACH: 'WARMPOOL_INSTANCE_UNREACHABLE',
  EPIPE: 'WARMPOOL_INSTANCE_UNREACHABLE',
  ENOTFOUND: 'WARMPOOL_INSTANCE_UNREACHABLE',
  ETIMEDOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  ESOCKETTIMEDOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  UND_ERR_SOCKET: 'WARMPOOL_INSTANCE_UNREACHABLE',
  UND_ERR_CONNECT_TIMEOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  UND_ERR_CLOSED: 'WARMPOOL_SHUTTING_DOWN',
  UND_ERR_DESTROYED: 'WARMPOOL_SHUTTING_DOWN',
  FST_REPLY_FROM_HEADERS_TIMEOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
  FST_REPLY_FROM_SOCKET_TIMEOUT: 'WARMPOOL_UPSTREAM_TIMEOUT',
};

/** The code a thrown thing maps to (unknown errors are internal). */
export function routerCodeOf(err: unknown): RouterErrorCode {
  if (err instanceof RouterError) return err.code;
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (WarmpoolError.is(err)) {
    if (code in ROUTER_ERRORS) return code as RouterErrorCode;
    if (code === 'WARMPOOL_REGISTRY_UNAVAILABLE' || code === 'WARMPOOL_REGISTRY_CLOSED') return 'WARMPOOL_REGISTRY_UNAVAILABLE';
    return 'WARMPOOL_INTERNAL';
  }
  const mapped = FASTIFY_CODES[code] ?? NODE_CODES[code];
  if (mapped) return mapped;
  if (code.startsWith('HPE_')) return 'WARMPOOL_BAD_REQUEST';
  // Other client errors fastify raises with a 4xx status (e.g. an unsupported method).
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 0;
  if (status === 404) return 'WARMPOOL_NOT_FOUND';
  if (status === 405) return 'WARMPOOL_METHOD_NOT_ALLOWED';
  if (status === 413) return 'WARMPOOL_BODY_TOO_LARGE';
  if (status === 415) return 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE';
  if (status >= 400 && status < 500) return 'WARMPOOL_BAD_REQUEST';
  return 'WARMPOOL_INTERNAL';
}

/**
 * Raised by the router's own HTTP client (undici, Node) about the request it was asked to
 * send, or about itself (closed), before the instance could answer anything: never the
 * instance's fault (undici's `lib/core/errors.js`, Node's `ERR_*` argument checks).
 */
const OWN_CLIENT_CODES = new Set([
  'UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED', 'UND_ERR_ABORTED', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_INVALID_CHAR',
  'ERR_INVALID_HTTP_TOKEN', 'ERR_HTTP_INVALID_HEADER_VALUE', 'ERR_UNESCAPED_CHARACTERS',
]);

/**
 * The code of a failed hop to an instance: unreachable or too slow as usual; an error of
 * the router's own HTTP client keeps its own code (500 when it is a router bug, 503 while
 * closing: never blamed on the instance); anything else that went wrong on that hop (not
 * HTTP, a bad status, broken framing, oversized headers) is the instance's invalid answer,
 * 502, never the router's own 500.
 */
export function upstreamCodeOf(err: unknown): RouterErrorCode {
  const code = routerCodeOf(err);
  if (code === 'WARMPOOL_INSTANCE_UNREACHABLE' || code === 'WARMPOOL_UPSTREAM_TIMEOUT') return code;
  const raw = (err as { code?: unknown } | null)?.code;
  if (err instanceof RouterError || (typeof raw === 'string' && OWN_CLIENT_CODES.has(raw))) return code;
  return 'WARMPOOL_INSTANCE_BAD_RESPONSE';
}

/** A failed hop to an instance as the error the client gets (see upstreamCodeOf). */
export function upstreamError(err: unknown): unknown {
  const code = upstreamCodeOf(err);
  return code === routerCodeOf(err) ? err : new RouterError(code, describe(code, err), { cause: err });
}

/** The one place an error becomes an HTTP status, headers and body. */
export function httpErrorOf(err: unknown): HttpError {
  const code = routerCodeOf(err);
  const { status } = ROUTER_ERRORS[code];
  const headers: Record<string, string> = err instanceof RouterError ? { ...err.headers } : {};
  if (status === 503 && !headers['retry-after']) headers['retry-after'] = '1';
  // Internal errors never leak details; client errors say what was wrong.
  const message = code === 'WARMPOOL_INTERNAL'
    ? 'internal error'
    : err instanceof RouterError ? err.message : describe(code, err);
  return { status, headers, body: { error: { code, message } } };
}

function describe(code: RouterErrorCode, err: unknown): string {
  switch (code) {
    case 'WARMPOOL_HEADERS_TOO_LARGE': return 'request headers too large';
    case 'WARMPOOL_BODY_TOO_LARGE': return 'request body too large';
    // The JSON parser also refuses prototype keys (prototype pollution), with the same error.
    case 'WARMPOOL_BAD_JSON': return 'request body is not valid JSON, or has a "__proto__" or "constructor.prototype" key (refused)';
    case 'WARMPOOL_INSTANCE_UNREACHABLE': return 'the session\'s instance is unreachable';
    case 'WARMPOOL_UPSTREAM_TIMEOUT': return 'the session\'s instance did not answer in time';
    case 'WARMPOOL_INSTANCE_BAD_RESPONSE': return 'the session\'s instance sent an invalid HTTP response';
    case 'WARMPOOL_REGISTRY_UNAVAILABLE': return 'the registry is unavailable';
    case 'WARMPOOL_REQUEST_TIMEOUT': return 'request timed out';
    default: {
      const m = (err as { message?: unknown } | null)?.message;
      return typeof m === 'string' && m.length < 300 ? m : 'bad request';
    }
  }
}

/** A complete raw HTTP/1.1 error response, for sockets fastify does not own (clientError, upgrade). */
export function rawHttpError(err: unknown): string {
  const h = httpErrorOf(err);
  const body = JSON.stringify(h.body);
  const lines = [
    `HTTP/1.1 ${h.status} ${STATUS_TEXT[h.status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(h.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 410: 'Gone',
  413: 'Payload Too Large', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};
