import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { CREDENTIAL_HEADER, SESSION_HEADER } from '@warmpool/registry';

/** RFC 9110 7.6.1: meaningful for one connection only, never forwarded. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

/** What a client may claim about where a request came from: the router says it instead. */
const CLIENT_FORWARDING = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip'];

function connectionTokens(v: string | string[] | undefined): string[] {
  if (!v) return [];
  return (Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/**
 * Rewrites a client request's headers in place for the hop to the instance: hop-by-hop
 * headers (and any the client listed in Connection) dropped, X-Forwarded-* set from the
 * socket, never from the client, any client-sent credential replaced by the router's.
 * For a WebSocket upgrade, `Connection: Upgrade` and `Upgrade` stay.
 */
export function prepareUpstreamHeaders(
  req: IncomingMessage,
  opts: { credential: string; sessionId: string; upgrade?: boolean },
): void {
  const h = req.headers;
  const upgrade = opts.upgrade ? h.upgrade : undefined;
  for (const name of connectionTokens(h.connection)) {
    // A client must not be able to strip what the sidecar or the app rely on.
    if (name !== 'host' && name !== 'content-length' && name !== 'transfer-encoding') delete h[name];
  }
  for (const name of HOP_BY_HOP) delete h[name];
  for (const name of CLIENT_FORWARDING) delete h[name];
  if (h['transfer-encoding'] !== undefined) h['transfer-encoding'] = 'chunked';
  if (upgrade) {
    h.connection = 'Upgrade';
    h.upgrade = upgrade;
  }
  const sock = req.socket;
  h['x-forwarded-for'] = sock.remoteAddress ?? '';
  h['x-forwarded-proto'] = (sock as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  if (h.host) h['x-forwarded-host'] = h.host;
  if (sock.localPort) h['x-forwarded-port'] = String(sock.localPort);
  h[CREDENTIAL_HEADER] = opts.credential;
  h[SESSION_HEADER] = opts.sessionId;
}

/** Drops hop-by-hop headers of an instance's response (Node frames the client response itself). */
export function stripResponseHopByHop(h: IncomingHttpHeaders, keepUpgrade = false): void {
  for (const name of connectionTokens(h.connection)) delete h[name];
  for (const name of HOP_BY_HOP) if (!(keepUpgrade && (name === 'upgrade' || name === 'connection'))) delete h[name];
  delete h['transfer-encoding'];
}
