import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SessionRecord } from '@warmpool/registry';
import { RouterError, httpErrorOf, rawHttpError, upstreamCodeOf, upstreamError } from './errors.js';
import { upstreamHeaders } from './forward-headers.js';
import { ClientGone, type ResponseHeadersHook, type UpstreamProxy } from './proxy-adapter.js';
import type { RouterMetrics } from './metrics.js';

/** How long a session's entry stays after its last proxied response closed. */
const ENTRY_LINGER_MS = 5000;

interface Streaming { session: SessionRecord; open: number; touchedAt: number; lastUsedAt: number }

/**
 * Sends one request of a session to its instance: headers prepared (credential, forwarding,
 * hop-by-hop), `req.url` set to the instance-side path, body size enforced, failures mapped
 * to 502/504 before the response starts and to an aborted response after.
 */
export class SessionForwarder {
  /**
   * Sessions with proxied responses, by session id: how many are open and when the session
   * was last touched for them. An entry outlives its responses by ENTRY_LINGER_MS, so a
   * session with steady traffic reuses one entry; a request then only changes numbers in
   * it. (Keeping each response in a long-lived map instead made the router's garbage
   * collector do a third more work per request.)
   */
  private readonly streaming = new Map<string, Streaming>();
  private readonly sweeper: NodeJS.Timeout;
  /** Responses still queued behind another on a pipelined connection (see queuedOn). */
  private readonly queued = new WeakMap<Socket, Set<() => void>>();

  constructor(
    private readonly proxy: UpstreamProxy,
    private readonly metrics: RouterMetrics,
    private readonly maxBodyBytes: number,
    /** Marks traffic on a session (batched keep-alive of its lease). */
    private readonly touch: (s: SessionRecord) => void = () => undefined,
    private readonly log?: FastifyBaseLogger,
    private readonly now: () => number = Date.now,
  ) {
    // A response still streaming (SSE, a long completion) keeps its session alive: its
    // session is touched every third of its idle timeout until the response closes. One
    // timer for all open responses, nothing per request.
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, entry] of this.streaming) {
      if (entry.open === 0) {
        if (now - entry.lastUsedAt >= ENTRY_LINGER_MS) this.streaming.delete(id);
      } else if (now - entry.touchedAt >= Math.max(1000, (entry.session.idleTimeoutSec * 1000) / 3)) {
        entry.touchedAt = now;
        this.touch(entry.session);
      }
    }
  }

  /** Registers the proxy engine on the fastify scope whose routes call web(). */
  register(app: FastifyInstance): Promise<void> {
    return this.proxy.register(app);
  }

  web(request: FastifyRequest, reply: FastifyReply, session: SessionRecord, credential: string, path: string, onHeaders?: ResponseHeadersHook): FastifyReply {
    const req = request.raw;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) {
      // Answer without reading the body; the connection closes so the unread body goes nowhere.
      reply.header('connection', 'close');
      return this.replyError(reply, new RouterError('WARMPOOL_BODY_TOO_LARGE', `request body exceeds ${this.maxBodyBytes} bytes`));
    }
    const res = reply.raw;
    // The client left while the session was being looked up: nothing to forward, and its
    // response will not close again to end what would be started for it.
    if (res.destroyed) return reply;
    const headers = upstreamHeaders(req, { credential, sessionId: session.id });
    const gone = new ClientGone(res);
    const now = this.now();
    let entry = this.streaming.get(session.id);
    if (entry === undefined) {
      entry = { session, open: 0, touchedAt: now, lastUsedAt: now };
      this.streaming.set(session.id, entry);
    } else {
      // The caller touched the session for this request.
      if (entry.session !== session) entry.session = session;
      entry.touchedAt = now;
    }
    entry.open++;
    const done = entry;
    // A pipelined request queued behind another response has no socket yet: when the client
    // goes away, its response never closes (Node gives it the socket only when its turn
    // comes). The connection's close ends it instead. Only queued responses pay for this.
    const conn = res.socket === null ? req.socket as Socket | null : null;
    const queue = conn === null ? undefined : this.queuedOn(conn);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      queue?.delete(end);
      done.open--;
      done.lastUsedAt = this.now();
      // Gone before the response was complete (client closed, or we cut it off): stop the instance's work.
      if (!res.writableFinished) gone.abort();
    };
    res.once('close', end);
    if (queue !== undefined) {
      if (conn!.destroyed) end();
      else queue.add(end);
    }
    this.proxy.web(request, reply, session.address, path, headers, (err) => this.failed(err, reply), onHeaders, gone);
    return reply;
  }

  /**
   * The ends of the responses queued on a client connection, called when it closes: one
   * listener per connection however many requests a client pipelines.
   */
  private queuedOn(conn: Socket): Set<() => void> {
    let queue = this.queued.get(conn);
    if (queue === undefined) {
      const q = new Set<() => void>();
      queue = q;
      this.queued.set(conn, q);
      conn.once('close', () => { for (const end of q) end(); });
    }
    return queue;
  }

  /** Stops the keep-alive sweep. Idempotent. */
  close(): void {
    clearInterval(this.sweeper);
    this.streaming.clear();
  }

  ws(req: IncomingMessage, socket: Duplex, head: Buffer, session: SessionRecord, credential: string, path: string): void {
    req.url = path;
    req.headers = upstreamHeaders(req, { credential, sessionId: session.id, upgrade: true });
    this.proxy.ws(req, socket, head, session.address, (err) => {
      this.metrics.proxyErrors.inc({ code: upstreamCodeOf(err) });
      // Before the upgrade nothing was written: answer in HTTP. After it, just close.
      if (socket.writable && (socket as { bytesWritten?: number }).bytesWritten === 0) socket.write(rawHttpError(upstreamError(err)));
    });
  }

  private replyError(reply: FastifyReply, err: unknown): FastifyReply {
    const h = httpErrorOf(err);
    return reply.code(h.status).headers(h.headers).send(h.body);
  }

  private failed(err: NodeJS.ErrnoException, reply: FastifyReply): void {
    const res = reply.raw;
    // The client went away (its request was aborted with it): nobody to answer, not the instance's fault.
    if (res.destroyed || res.writableEnded) return;
    if (err instanceof RouterError && err.code === 'WARMPOOL_BODY_TOO_LARGE') {
      // The rest of the body is not read: the connection closes after the answer.
      if (!reply.sent) this.replyError(reply.header('connection', 'close'), err);
      else res.destroy();
      return;
    }
    const code = upstreamCodeOf(err);
    this.metrics.proxyErrors.inc({ code });
    this.log?.warn({ code, err: err.message, errCode: err.code, path: reply.request.raw.url }, 'proxied request failed');
    if (reply.sent || res.headersSent) res.destroy();
    else this.replyError(reply, upstreamError(err));
  }
}
