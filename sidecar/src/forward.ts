import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { CREDENTIAL_HEADER } from '@warmpool/registry/credentials';
import { SidecarError } from './errors.js';

/** RFC 9110 7.6.1: meaningful for one connection only. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function connectionTokens(v: string | string[] | undefined): Set<string> {
  if (!v) return new Set();
  return new Set((Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
}

/** Request headers for the hop to the app: no credential, no hop-by-hop headers. */
export function upstreamRequestHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const drop = connectionTokens(req.headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name === CREDENTIAL_HEADER || HOP_BY_HOP.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function responseHeaders(res: IncomingMessage): OutgoingHttpHeaders {
  const drop = connectionTokens(res.headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export interface ForwarderOptions {
  host: string;
  port: number;
  /** Upper bound of idle keep-alive sockets to the app. */
  maxFreeSockets?: number;
  /** An open tunnel counts as busy only this long after its last byte (default 30 s): an idle WebSocket is no work. */
  tunnelBusyMs?: number;
  now?: () => number;
}

/**
 * Forwards HTTP requests and WebSocket upgrades to the app on localhost (the sidecar shares
 * the app container's network namespace). Bodies stream both ways: SSE and chunked
 * responses reach the client chunk by chunk, as the app writes them.
 */
export class Forwarder {
  private readonly agent: http.Agent;
  /** Upgraded connections are detached from the HTTP server: close() ends them here. */
  private readonly tunnels = new Set<Duplex>();
  /** HTTP exchanges under way (request received, response not yet finished or closed). */
  private active = 0;

  constructor(private readonly opts: ForwarderOptions) {
    this.agent = new http.Agent({ keepAlive: true, maxFreeSockets: opts.maxFreeSockets ?? 64 });
  }

  /** Epoch ms of the last byte through any tunnel. */
  private tunnelActivity = 0;

  /**
   * Work in flight: HTTP exchanges under way, plus open tunnels that carried a byte within
   * tunnelBusyMs (a busy app may answer its health endpoint slowly; an idle WebSocket is no work).
   */
  inFlight(): number {
    const now = (this.opts.now ?? Date.now)();
    const busyTunnels = now - this.tunnelActivity < (this.opts.tunnelBusyMs ?? 30_000) ? this.tunnels.size : 0;
    return this.active + busyTunnels;
  }

  http(req: IncomingMessage, res: ServerResponse, onError: (err: SidecarError) => void): void {
    this.active++;
    res.once('close', () => { this.active--; });
    const upstream = http.request({
      host: this.opts.host,
      port: this.opts.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(req),
      agent: this.agent,
    });
    upstream.on('response', (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.statusMessage, responseHeaders(ures));
      // Headers now, not with the first body chunk: an SSE client sees the stream open at once.
      res.flushHeaders();
      ures.pipe(res);
      ures.on('error', () => res.destroy());
      ures.on('aborted', () => res.destroy());
    });
    upstream.on('error', (err) => {
      if (res.headersSent) { res.destroy(); return; }
      onError(new SidecarError('WARMPOOL_APP_UNAVAILABLE', `the app did not answer: ${err.message}`, { cause: err, retryable: true }));
    });
    // The client went away before the response finished: stop the app's work too.
    res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
    req.pipe(upstream);
  }

  /** A WebSocket (or any Upgrade) handshake: raw bytes both ways once connected. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const app = net.connect(this.opts.port, this.opts.host);
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() === CREDENTIAL_HEADER) continue;
      lines.push(`${raw[i]}: ${raw[i + 1]}`);
    }
    app.setNoDelay(true);
    const touch = (): void => { this.tunnelActivity = (this.opts.now ?? Date.now)(); };
    touch();
    app.on('connect', () => {
      app.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) app.write(head);
      app.pipe(socket);
      socket.pipe(app);
      // After the pipes: a listener attached earlier would consume bytes before they are piped.
      app.on('data', touch);
      socket.on('data', touch);
    });
    this.tunnels.add(socket);
    const done = (): void => { this.tunnels.delete(socket); app.destroy(); socket.destroy(); };
    app.on('error', () => {
      if (socket.writable && app.bytesRead === 0) {
        const body = new SidecarError('WARMPOOL_APP_UNAVAILABLE', 'the app did not answer').toBody();
        socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      } else done();
    });
    app.on('close', done);
    socket.on('error', done);
    socket.on('close', done);
  }

  close(): void {
    this.agent.destroy();
    for (const s of this.tunnels) s.destroy();
    this.tunnels.clear();
  }
}
