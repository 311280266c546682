import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { CREDENTIAL_HEADER, SESSION_HEADER } from '@warmpool/registry';

/**
 * RFC 9110 7.6.1: meaningful for one connection only, never forwarded (HTTP2-Settings too:
 * RFC 7540 3.2.1, it only comes with an h2c upgrade offer).
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'http2-settings'];

/**
 * Expectations are met by the router itself (RFC 9110 10.1.1): Node answers
 * `100-continue` before the body is read and refuses any other with 417, so the instance
 * never needs to see one (and the router's HTTP client refuses to send it).
 */
const EXPECTATION = ['expect'];

/** What a client may claim about where a request came from: the router says it instead. */
const CLIENT_FORWARDING = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip'];

/** Never copied from a client's request: the router sets them itself, or they are hop-by-hop. */
const DROPPED = new Set([...HOP_BY_HOP, ...EXPECTATION, ...CLIENT_FORWARDING, CREDENTIAL_HEADER, SESSION_HEADER]);

/** A client must not be able to strip, by listing them in Connection, what the instance relies on. */
const NEVER_LISTED = new Set(['host', 'content-length', 'transfer-encoding']);

function connectionTokens(v: string | string[] | undefined): string[] {
  if (!v) return [];
  return (Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/**
 * The header names a Connection header lists beyond the usual keep-alive / close (dropped
 * anyway as hop-by-hop); `keep` names are never in the list.
 */
function listedByConnection(v: string | string[] | undefined, keep?: Set<string>): string[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v.length <= 10) {
    const l = v.toLowerCase();
    if (l === 'keep-alive' || l === 'close') return undefined;
  }
  const names = connectionTokens(v).filter((n) => keep === undefined || !keep.has(n));
  return names.length > 0 ? names : undefined;
}

/**
 * The headers of a client request for the hop to the instance, as a new object (the
 * client's are left as they arrived): hop-by-hop headers (and any the client listed in
 * Connection) and Expect dropped, X-Forwarded-* set from the socket, never from the client, any
 * client-sent credential or session header replaced by the router's. For a WebSocket
 * upgrade, `Connection: Upgrade` and `Upgrade` stay.
 */
export function upstreamHeaders(
  req: IncomingMessage,
  opts: { credential: string; sessionId: string; upgrade?: boolean },
): IncomingHttpHeaders {
  const h = req.headers;
  const listed = listedByConnection(h.connection, NEVER_LISTED);
  const out: IncomingHttpHeaders = {};
  for (const name in h) {
    if (DROPPED.has(name) || (listed !== undefined && listed.includes(name))) continue;
    out[name] = h[name];
  }
  if (out['transfer-encoding'] !== undefined) out['transfer-encoding'] = 'chunked';
  if (opts.upgrade && h.upgrade !== undefined) {
    out.connection = 'Upgrade';
    out.upgrade = h.upgrade;
  }
  const sock = req.socket;
  out['x-forwarded-for'] = sock.remoteAddress ?? '';
  out['x-forwarded-proto'] = (sock as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  if (h.host) out['x-forwarded-host'] = h.host;
  if (sock.localPort) out['x-forwarded-port'] = String(sock.localPort);
  out[CREDENTIAL_HEADER] = opts.credential;
  out[SESSION_HEADER] = opts.sessionId;
  return out;
}

/** Never copied from an instance's response: Node frames the client response itself. */
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, 'transfer-encoding']);

/**
 * An instance's response headers for the client, as a new object: hop-by-hop headers (and
 * any listed in Connection) left out. (Deleting them in place instead would turn the object
 * into a slow dictionary for everything that reads it afterwards.)
 */
export function clientResponseHeaders(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const listed = listedByConnection(h.connection);
  const out: IncomingHttpHeaders = {};
  for (const name in h) {
    if (RESPONSE_DROPPED.has(name) || (listed !== undefined && listed.includes(name))) continue;
    out[name] = h[name];
  }
  return out;
}
