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

/**
 * Never sent on to the app: the credential; HTTP2-Settings (an h2c offer's, RFC 7540 3.2.1);
 * Expect, met by the sidecar's own server (it answers `100-continue` itself, RFC 9110 10.1.1).
 */
const REQUEST_DROPPED = new Set([CREDENTIAL_HEADER, 'http2-settings', 'expect']);

/** Request headers for the hop to the app: no credential, expectation or hop-by-hop headers. */
export function upstreamRequestHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const drop = connectionTokens(req.headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || REQUEST_DROPPED.has(name) || HOP_BY_HOP.has(name) || drop.has(name)) continue;
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
  /**
   * An idle kept-alive connection to the app is closed after this long, or sooner when the
   * app's `Keep-Alive: timeout=N` says so (Node's agent then waits N-1 s). Default
   * APP_KEEPALIVE_MS; 0: a fresh connection per request.
   */
  keepAliveMs?: number;
}

/**
 * Shorter than the idle timeout of the model servers users run (uvicorn, hence vLLM: 5 s;
 * llama.cpp server: 5 s), none of which sends a Keep-Alive hint.
 */
export const APP_KEEPALIVE_MS = 2000;

/** RFC 9110 9.2.2: a client may repeat these automatically. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How a kept-alive connection the app had already closed fails a request written onto it. */
const CONNECTION_LOST = new Set(['ECONNRESET', 'EPIPE']);

/**
 * A request that can be sent again as it is: an idempotent method and no body (so nothing
 * of the client's was consumed). Only these go on kept-alive connections; see http().
 */
function replayable(req: IncomingMessage): boolean {
  if (!IDEMPOTENT.has(req.method ?? '')) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/**
 * Forwards HTTP requests and WebSocket upgrades to the app on localhost (the sidecar owns
 * the pod's network namespace and the app joins it). Bodies stream both ways: SSE and chunked
 * responses reach the client chunk by chunk, as the app writes them.
 */
export class Forwarder {
  /** Kept-alive connections, for replayable requests only. */
  private readonly agent: http.Agent;
  /** One connection per request: never one the app may have closed meanwhile. */
  private readonly fresh = new http.Agent({ keepAlive: false });
  /** Upgraded connections are detached from the HTTP server: close() ends them here. */
  private readonly tunnels = new Set<Duplex>();
  /** HTTP exchanges under way (request received, response not yet finished or closed). */
  private active = 0;

  constructor(private readonly opts: ForwarderOptions) {
    const keepAliveMs = opts.keepAliveMs ?? APP_KEEPALIVE_MS;
    // `timeout` closes idle pooled sockets (and lets the app's Keep-Alive hint shorten it:
    // Node ignores the hint without one). On a socket in use it only emits 'timeout' on the
    // request, which nothing here listens to: a slow stream is never cut by it.
    this.agent = keepAliveMs > 0
      ? new http.Agent({ keepAlive: true, maxFreeSockets: opts.maxFreeSockets ?? 64, timeout: keepAliveMs })
      : this.fresh;
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

  /**
   * Forwards one request. Apps close idle keep-alive connections when they like (uvicorn
   * after 5 s, without saying so), and a request written onto a connection the app has just
   * closed is lost. So (as Go's net/http transport decides): a replayable request (see
   * replayable()) goes on a kept-alive connection and, when that reused connection fails
   * before any byte of a response, is sent once more on a fresh one; any other request (a
   * POST, a body) always goes on a fresh connection (loopback: a connect costs microseconds),
   * so it is never lost and never sent twice.
   */
  http(req: IncomingMessage, res: ServerResponse, onError: (err: SidecarError) => void): void {
    this.active++;
    res.once('close', () => { this.active--; });
    const headers = upstreamRequestHeaders(req);
    const canReplay = replayable(req);
    let upstream: http.ClientRequest | undefined;
    const send = (agent: http.Agent, retry: boolean): void => {
      const u = http.request({ host: this.opts.host, port: this.opts.port, method: req.method, path: req.url, headers, agent });
      upstream = u;
      let answered = false;
      u.on('response', (ures) => {
        answered = true;
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, responseHeaders(ures));
        // Headers now, not with the first body chunk: an SSE client sees the stream open at once.
        res.flushHeaders();
        ures.pipe(res);
        ures.on('error', () => res.destroy());
        ures.on('aborted', () => res.destroy());
      });
      u.on('error', (err: NodeJS.ErrnoException) => {
        if (retry && !answered && u.reusedSocket && !res.destroyed && CONNECTION_LOST.has(err.code ?? '')) {
          send(this.fresh, false);
          return;
        }
        if (res.headersSent) { res.destroy(); return; }
        onError(new SidecarError('WARMPOOL_APP_UNAVAILABLE', `the app did not answer: ${err.message}`, { cause: err, retryable: true }));
      });
      if (canReplay) u.end();
      else req.pipe(u);
    };
    // The client went away before the response finished: stop the app's work too.
    res.on('close', () => { if (!res.writableFinished) upstream?.destroy(); });
    if (canReplay) req.resume();
    send(canReplay ? this.agent : this.fresh, canReplay && this.agent !== this.fresh);
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
    this.fresh.destroy();
    for (const s of this.tunnels) s.destroy();
    this.tunnels.clear();
  }
}
