import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SessionRecord } from '@warmpool/registry';
import { RouterError, httpErrorOf, rawHttpError, routerCodeOf } from './errors.js';
import { prepareUpstreamHeaders } from './forward-headers.js';
import type { ResponseHook, UpstreamProxy } from './proxy-adapter.js';
import type { RouterMetrics } from './metrics.js';

/** Writes an error as JSON on a response fastify no longer owns (hijacked). */
export function sendRawError(res: ServerResponse, err: unknown, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) { res.destroy(); return; }
  const h = httpErrorOf(err);
  const body = JSON.stringify(h.body);
  res.writeHead(h.status, { ...extraHeaders, ...h.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Sends one request of a session to its instance: headers prepared (credential, forwarding,
 * hop-by-hop), `req.url` set to the instance-side path, body size enforced, failures mapped
 * to 502/504 before the response starts and to an aborted response after.
 */
export class SessionForwarder {
  constructor(
    private readonly proxy: UpstreamProxy,
    private readonly metrics: RouterMetrics,
    private readonly maxBodyBytes: number,
    /** Marks traffic on a session (batched keep-alive of its lease). */
    private readonly touch: (s: SessionRecord) => void = () => undefined,
  ) {}

  /**
   * A response still streaming (SSE, a long completion) keeps its session alive: the
   * session is touched every third of its idle timeout until the response closes.
   */
  private keepAliveWhileOpen(res: ServerResponse, session: SessionRecord): void {
    const every = Math.max(1000, (session.idleTimeoutSec * 1000) / 3);
    const touch = this.touch;
    let timer: NodeJS.Timeout = setTimeout(function tick(this: void) {
      touch(session);
      timer = setTimeout(tick, every);
      timer.unref();
    }, every);
    timer.unref();
    res.once('close', () => clearTimeout(timer));
  }

  web(req: IncomingMessage, res: ServerResponse, session: SessionRecord, credential: string, path: string, onResponse?: ResponseHook): void {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) {
      // Answer without reading the body; the connection closes so the unread body goes nowhere.
      res.setHeader('connection', 'close');
      sendRawError(res, new RouterError('WARMPOOL_BODY_TOO_LARGE', `request body exceeds ${this.maxBodyBytes} bytes`));
      return;
    }
    if (declared === undefined && req.headers['transfer-encoding'] !== undefined) this.limitChunkedBody(req, res);
    req.url = path;
    prepareUpstreamHeaders(req, { credential, sessionId: session.id });
    this.keepAliveWhileOpen(res, session);
    this.proxy.web(req, res, session.address, (err) => this.failed(err, res), onResponse);
  }

  ws(req: IncomingMessage, socket: Duplex, head: Buffer, session: SessionRecord, credential: string, path: string): void {
    req.url = path;
    prepareUpstreamHeaders(req, { credential, sessionId: session.id, upgrade: true });
    this.proxy.ws(req, socket, head, session.address, (err) => {
      this.metrics.proxyErrors.inc({ code: routerCodeOf(err) });
      // Before the upgrade nothing was written: answer in HTTP. After it, just close.
      if (socket.writable && (socket as { bytesWritten?: number }).bytesWritten === 0) socket.write(rawHttpError(err));
    });
  }

  /** A chunked body is counted as it streams; past the limit the request is cut off. */
  private limitChunkedBody(req: IncomingMessage, res: ServerResponse): void {
    let seen = 0;
    const limit = this.maxBodyBytes;
    req.on('data', (c: Buffer) => {
      seen += c.length;
      if (seen > limit && !res.headersSent) {
        res.setHeader('connection', 'close');
        sendRawError(res, new RouterError('WARMPOOL_BODY_TOO_LARGE', `request body exceeds ${limit} bytes`));
        req.unpipe();
        req.destroy();
      }
    });
  }

  private failed(err: NodeJS.ErrnoException, res: ServerResponse): void {
    if (res.writableEnded) return; // already answered (e.g. body too large)
    this.metrics.proxyErrors.inc({ code: routerCodeOf(err) });
    sendRawError(res, err);
  }
}
