// Which HTTP/1.1 upgrade offers Warmpool's HTTP servers (router, sidecar) tunnel: only
// WebSocket handshakes. Every other offer (h2c from `curl --http2` or Java's HttpClient,
// TLS/1.x, anything) is answered as the plain HTTP/1.1 request it also is (RFC 9110 7.8:
// a server may ignore an Upgrade offer). Shared by both so that the two hops agree.
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

function tokens(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/**
 * Whether a request Node handed to the server's `upgrade` listener is a WebSocket handshake
 * (RFC 6455 4.1: a GET offering `Upgrade: websocket`); Node only emits `upgrade` when the
 * request also says `Connection: upgrade`.
 */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === 'GET' && tokens(req.headers.upgrade).includes('websocket');
}

/** Connection options that only make sense with an upgrade offer. */
const UPGRADE_ONLY = new Set(['upgrade', 'http2-settings']);

/**
 * The request head of `req` without its upgrade offer, as bytes: request line, and every
 * header as received (Node keeps values as latin1) except Upgrade and HTTP2-Settings, with
 * those two names taken out of Connection (which is dropped when nothing else is left).
 */
export function headWithoutUpgrade(req: IncomingMessage): Buffer {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (UPGRADE_ONLY.has(lower)) continue;
    let value = raw[i + 1]!;
    if (lower === 'connection') {
      value = value.split(',').map((s) => s.trim()).filter((s) => s !== '' && !UPGRADE_ONLY.has(s.toLowerCase())).join(', ');
      if (value === '') continue;
    }
    lines.push(`${name}: ${value}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/**
 * Answers an upgrade offer that is not tunnelled as a plain HTTP/1.1 request: its head,
 * without the offer, and the bytes Node had already read past it (`head`, the start of a
 * body or of the next request) are put back in front of the socket, and the socket is
 * handed to `server` again (`connection`, as Node documents for injected sockets). Node's
 * parser then reads the request, its body and any later request on the connection as usual,
 * so every route, limit and keep-alive rule applies to it unchanged.
 */
export function answerAsHttp1(server: Server, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.unshift(head.length > 0 ? Buffer.concat([headWithoutUpgrade(req), head]) : headWithoutUpgrade(req));
  server.emit('connection', socket as Socket);
}
