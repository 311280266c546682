import { isValidSessionId } from '@warmpool/registry';
import { RouterError } from './errors.js';

export const SESSION_COOKIE = 'warmpool_session';

/**
 * Dot segments, raw or percent-encoded, and encoded slashes or backslashes inside a segment:
 * a proxied path carrying any of them is refused (400) rather than normalised, so no
 * spelling of a path can climb out of `/v1/sessions/{id}/proxy/` or be read differently by
 * the instance than by the router.
 */
const DOT_SEGMENT = /(?:^|\/|\\|%2f|%5c)(?:\.|%2e){1,2}(?=$|\/|\\|%2f|%5c|\?|#)/i;
const ENCODED_SEPARATOR = /%2f|%5c|\\|%00/i;

/** The path (and query) of a proxied request, checked. Throws WARMPOOL_BAD_PATH. */
export function checkProxyPath(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  if (!path.startsWith('/')) throw new RouterError('WARMPOOL_BAD_PATH', 'path must start with /');
  if (DOT_SEGMENT.test(path)) throw new RouterError('WARMPOOL_BAD_PATH', 'path must not contain "." or ".." segments');
  if (ENCODED_SEPARATOR.test(path)) throw new RouterError('WARMPOOL_BAD_PATH', 'path must not contain encoded slashes, backslashes or NUL');
  return pathAndQuery;
}

/** The same checks as checkProxyPath, without throwing (hot path). */
export function isCleanProxyPath(pathAndQuery: string): boolean {
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  return path.startsWith('/') && !DOT_SEGMENT.test(path) && !ENCODED_SEPARATOR.test(path);
}

/** A session id from a client, validated before any lookup. Throws WARMPOOL_INVALID_SESSION_ID. */
export function checkSessionId(raw: string | undefined): string {
  if (raw === undefined || !isValidSessionId(raw)) {
    throw new RouterError('WARMPOOL_INVALID_SESSION_ID', 'malformed session id (expected 22 base64url characters)');
  }
  return raw;
}

/** The value of one cookie, or undefined. Only the named cookie is looked at. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

/**
 * The session a plain `ANY /{path}` request names: header first, then cookie. Malformed is
 * an error; absent is undefined (an implicit session may be claimed).
 */
export function sessionIdOf(headers: { [k: string]: string | string[] | undefined }, headerName: string): string | undefined {
  const h = headers[headerName];
  if (Array.isArray(h)) throw new RouterError('WARMPOOL_INVALID_SESSION_ID', `more than one ${headerName} header`);
  if (h !== undefined) return checkSessionId(h.trim());
  const c = cookieValue(typeof headers.cookie === 'string' ? headers.cookie : undefined, SESSION_COOKIE);
  if (c !== undefined) return checkSessionId(c);
  return undefined;
}

/**
 * `?wait=SECONDS`: a non-negative decimal number of seconds (at most 3 decimals), capped at
 * the router's maximum however large (a client asking to wait a year waits the maximum).
 * Anything else (a sign, an exponent, a unit, a repeated parameter) is a 400.
 */
export function parseWait(raw: unknown, defaultSec: number, maxSec: number): number {
  if (raw === undefined || raw === '') return Math.min(defaultSec, maxSec);
  if (typeof raw !== 'string' || raw.length > 64 || !/^\d+(\.\d{1,3})?$/.test(raw)) {
    throw new RouterError('WARMPOOL_INVALID_WAIT', 'wait must be a number of seconds, e.g. ?wait=30');
  }
  return Math.min(Number(raw), maxSec);
}

const SERVICE_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkServiceName(raw: unknown): string {
  if (typeof raw !== 'string' || !SERVICE_RE.test(raw)) {
    throw new RouterError('WARMPOOL_INVALID_SERVICE', 'service must be a service name (lowercase letters, digits, dashes)');
  }
  return raw;
}

const IDEMPOTENCY_RE = /^[\x21-\x7e]{1,255}$/;

export function checkIdempotencyKey(raw: string | string[] | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !IDEMPOTENCY_RE.test(raw)) {
    throw new RouterError('WARMPOOL_INVALID_IDEMPOTENCY_KEY', 'Idempotency-Key must be 1-255 visible ASCII characters');
  }
  return raw;
}
