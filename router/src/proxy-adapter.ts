// The only file that imports the proxy libraries (see docs/decisions/proxy.md for why):
// plain HTTP goes through @fastify/reply-from on an undici pool, WebSocket upgrades through
// http-proxy-3. Everything else talks to the small UpstreamProxy interface.
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import replyFrom from '@fastify/reply-from';
import { createProxyServer } from 'http-proxy-3';
import { Agent, Client, Dispatcher as DispatcherBase, util as undiciUtil, type Dispatcher } from 'undici';
import { clientResponseHeaders } from './forward-headers.js';

export interface UpstreamProxyOptions {
  /**
   * The instance sending nothing this long fails the request: before its response
   * headers (504), or between two body chunks (the response is cut off).
   */
  idleTimeoutMs: number;
  /** Idle kept-alive connections to one instance are closed after this long. */
  keepAliveTimeoutMs?: number;
  /**
   * Responses with a Content-Length up to this many bytes are read whole, then written to
   * the client in one piece; longer ones, and every response without a length (SSE,
   * chunked), stream through as they arrive. 0 streams everything.
   */
  bufferResponseBytes?: number;
}

/** Changes the instance's response headers before they are written out (add cookies here). */
export type ResponseHeadersHook = (headers: IncomingHttpHeaders) => void;
/** Called once when the hop to the instance fails; the caller answers the client. */
export type ProxyErrorHandler = (err: NodeJS.ErrnoException) => void;

export interface UpstreamProxy {
  /** Registers the HTTP engine on the fastify instance whose routes call web(). */
  register(app: FastifyInstance): Promise<void>;
  /**
   * Forwards a request (with `headers` prepared for the hop, body = the request stream or
   * none) to http://{address}{path}, streaming the response back as it arrives. A client that goes
   * away aborts the upstream request, also before the instance has answered.
   */
  web(request: FastifyRequest, reply: FastifyReply, address: string, path: string, headers: IncomingHttpHeaders, onError: ProxyErrorHandler, onHeaders?: ResponseHeadersHook, gone?: ClientGone): void;
  /** Forwards a WebSocket upgrade; on failure the client socket is destroyed after onError. */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, address: string, onError: ProxyErrorHandler): void;
  /** Closes the kept-alive upstream connections. Idempotent. */
  close(): void;
}

/**
 * Fired when the client of a forwarded request goes away: aborts the request to the
 * instance, before or after its response headers. It stands between undici and the
 * request's own handler to learn undici's abort function, which costs a pointer per
 * request; an abort signal (AbortController, or an emitter undici listens on) costs more
 * than the rest of the hop.
 *
 * Given the client's response, it also sends the response head to the client as soon as
 * the instance's head has arrived, for a response that streams (SSE, chunked, or longer
 * than bufferResponseBytes). Fastify holds a streamed response's head until the first body
 * chunk, so an SSE client would otherwise learn that its stream is open only with the first
 * event (after the model's whole prefill, say). And it writes such a body's chunks straight
 * to the client's response: once the head is out and the body stream fastify pipes into the
 * response holds nothing, each further chunk goes to `response.write` directly, the
 * instance's connection paused while the client's is full. The body stream still ends the
 * response and carries errors as before, just no data. That skips a Readable push, a 'data'
 * event and a pipe write per chunk: 2-4 us of the router's 30 us per chunk of a long stream
 * (`npm run bench -- router-streams`, 5,000 streams). When the response is chunked and owns
 * its socket (see ownsSocket), the chunk is framed here and written to the socket in one
 * write: 4-5 us less again.
 */
export class ClientGone implements Dispatcher.DispatchHandler {
  aborted = false;
  reason: Error | undefined;
  /** The body stream reply-from got for the response (set when the instance's head arrives). */
  body: unknown;
  private inner: Dispatcher.DispatchHandler | undefined;
  private abortUpstream: ((err?: Error) => void) | undefined;
  /** undici's resume for the instance's connection, paused while the client's is full. */
  private resume: (() => void) | undefined;
  /** Chunks go to the response directly (see mayWriteDirect). */
  private direct = false;

  /** `response`: the client's response, whose head is sent early for streamed bodies (none: never). */
  constructor(private readonly response?: ServerResponse) {}

  /**
   * Wraps undici's handler of the forwarded request (once, when it is dispatched): the
   * handler of undici's request(), which has none of the optional progress callbacks.
   */
  wrap(handler: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler {
    this.inner = handler;
    return this;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = Object.assign(new Error('the client went away'), { code: 'UND_ERR_ABORTED' });
    const abort = this.abortUpstream;
    this.abortUpstream = undefined;
    // undici ignores it once the response is complete.
    abort?.(this.reason);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.inner!.onConnect!(abort);
    if (this.aborted) abort(this.reason);
    else this.abortUpstream = abort;
  }
  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    this.resume = resume;
    const more = this.inner!.onHeaders!(statusCode, headers, resume, statusText);
    // reply-from answered within that call. A body stream that is already flowing was
    // piped into the response by fastify, which set the response's headers first: the
    // head is complete and can go out now.
    const res = this.response;
    const body = this.body;
    if (res !== undefined && !res.headersSent && !res.destroyed && body instanceof Readable && body.readableFlowing === true) res.flushHeaders();
    return more;
  }
  onData(chunk: Buffer): boolean {
    const res = this.response;
    if (res !== undefined && (this.direct || this.mayWriteDirect(res))) {
      this.direct = true;
      // The client is going away: the abort is on its way; read nothing more meanwhile.
      if (res.destroyed) return false;
      const socket = res.socket;
      if (socket !== null && ownsSocket(res, socket)) {
        if (writeChunk(socket, chunk)) return true;
        socket.once('drain', this.resume!);
        return false;
      }
      if (res.write(chunk)) return true;
      res.once('drain', this.resume!);
      return false;
    }
    return this.inner!.onData!(chunk);
  }
  /**
   * The head is out and the body stream flows into the response with nothing buffered:
   * every byte pushed into it so far has been written, so a direct write keeps the order.
   * A body that SmallBodyReader reads whole never gets here (its callback gets a Buffer).
   */
  private mayWriteDirect(res: ServerResponse): boolean {
    const body = this.body as Readable | undefined;
    return body instanceof Readable && body.readableFlowing === true && body.readableLength === 0 && res.headersSent && !res.writableEnded && !res.writableNeedDrain;
  }
  onComplete(trailers: string[] | null): void {
    this.abortUpstream = undefined;
    this.resume = undefined;
    this.inner!.onComplete!(trailers);
  }
  onError(err: Error): void {
    this.abortUpstream = undefined;
    this.resume = undefined;
    this.inner!.onError!(err);
  }
  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.inner!.onUpgrade!(statusCode, headers, socket);
  }
}

type ResponseCallback = (err: Error | null, data?: { statusCode: number; headers: IncomingHttpHeaders; body: unknown; trailers: Record<string, string>; opaque: unknown; context: unknown }) => void;

/** Node's own fields of a ServerResponse that say whether its socket is its alone, right now. */
interface ResponseInternals { outputData: unknown[]; _headerSent: boolean; chunkedEncoding: boolean }

/**
 * The response is chunked, its head is on its socket, nothing of it waits in Node's buffers
 * (nor is the response corked), and the socket carries this response (not an earlier one
 * of a pipelined connection): a chunk framed here and written to the socket goes out
 * exactly where response.write would put it. One socket write per chunk instead of four
 * corked ones (size line, CRLF, data, CRLF) and a writev: 4-5 us of the router's CPU per
 * chunk of a long stream.
 */
function ownsSocket(res: ServerResponse, socket: NonNullable<ServerResponse['socket']>): boolean {
  const r = res as unknown as ResponseInternals;
  return r.chunkedEncoding && r._headerSent && r.outputData.length === 0 && res.writableCorked === 0 && (socket as unknown as { _httpMessage: unknown })._httpMessage === res && socket.writable;
}

/** Chunks up to this size are copied into one frame; larger ones go out as a corked writev. */
const FRAME_COPY_BYTES = 16 * 1024;
const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * Writes one HTTP/1.1 chunk (RFC 9112, section 7.1: size in hex, CRLF, the data, CRLF) to
 * the socket; nothing for empty data (a zero-size chunk ends the body). Returns what
 * socket.write returns (false: wait for 'drain').
 */
function writeChunk(socket: NonNullable<ServerResponse['socket']>, data: Buffer): boolean {
  // undici hands over empty pieces at times (a chunk split across reads); framed, one would
  // be the last-chunk marker: the client would take the rest as its next response.
  if (data.length === 0) return true;
  const size = data.length.toString(16);
  if (data.length > FRAME_COPY_BYTES) {
    socket.cork();
    socket.write(`${size}\r\n`, 'latin1');
    socket.write(data);
    const more = socket.write(CRLF);
    socket.uncork();
    return more;
  }
  const frame = Buffer.allocUnsafe(size.length + data.length + 4);
  frame.write(size, 0, 'latin1');
  let at = size.length;
  frame[at++] = 13;
  frame[at++] = 10;
  at += data.copy(frame, at);
  frame[at++] = 13;
  frame[at] = 10;
  return socket.write(frame);
}

/** A body delivered whole still answers destroy(), as reply-from may call it on a stream. */
const noDestroy = (): void => undefined;

/**
 * Reads a small response whole. It sits around the handler of undici's request() (which
 * would wrap the body in a stream) and, when the response has a Content-Length within the
 * limit, answers the request's callback itself with the body as one Buffer: reply-from then
 * sends a Buffer, which fastify writes in one piece, with no stream per response. Every
 * other response (no length, too long, HEAD, no body) goes to undici's handler untouched
 * and streams as before.
 */
class SmallBodyReader implements Dispatcher.DispatchHandler {
  private buffering = false;
  private statusCode = 0;
  private headers: IncomingHttpHeaders | undefined;
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly inner: Dispatcher.DispatchHandler, private callback: ResponseCallback | undefined, private readonly limit: number, private readonly method: string) {}

  onConnect(abort: (err?: Error) => void): void {
    this.inner.onConnect!(abort);
  }
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode >= 200 && statusCode !== 204 && statusCode !== 304 && this.method !== 'HEAD') {
      const headers = undiciUtil.parseHeaders(rawHeaders) as IncomingHttpHeaders;
      const length = headers['content-length'];
      if (length !== undefined && !headers['transfer-encoding'] && Number(length) <= this.limit) {
        this.buffering = true;
        this.statusCode = statusCode;
        this.headers = headers;
        return true;
      }
    }
    return this.inner.onHeaders!(statusCode, rawHeaders, resume, statusText);
  }
  onData(chunk: Buffer): boolean {
    if (!this.buffering) return this.inner.onData!(chunk);
    this.chunks.push(chunk);
    this.size += chunk.length;
    return true;
  }
  onComplete(trailers: string[] | null): void {
    if (!this.buffering) return this.inner.onComplete!(trailers);
    const callback = this.callback;
    this.callback = undefined;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    (body as Buffer & { destroy?: () => void }).destroy = noDestroy;
    callback?.(null, { statusCode: this.statusCode, headers: this.headers!, body, trailers: {}, opaque: null, context: null });
  }
  onError(err: Error): void {
    // undici's handler has not answered its callback yet: it reports the error (and
    // releases the request body) as for an error before the response.
    this.chunks = [];
    this.callback = undefined;
    this.inner.onError!(err);
  }
  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.inner.onUpgrade!(statusCode, headers, socket);
  }
}

/** RFC 9110 9.2.2: a client may repeat these automatically. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How a kept-alive connection the instance had already closed fails a request written onto it. */
const CONNECTION_LOST = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/** An idempotent request without a body: sending it again is safe and needs nothing kept. */
function replayable(opts: Dispatcher.DispatchOptions): boolean {
  return IDEMPOTENT.has(opts.method) && (opts.body === undefined || opts.body === null || opts.body === '');
}

/**
 * Sends a replayable request once more, on a connection of its own, when its connection
 * failed before any byte of a response: a pooled connection the instance closed while
 * idle (its close and our request crossing) loses no request. Anything else (a response
 * started, the client gone, a timeout) is reported as it happened.
 */
class RetryOnFreshConnection implements Dispatcher.DispatchHandler {
  private answered = false;
  private retried = false;

  constructor(private readonly inner: Dispatcher.DispatchHandler, private readonly opts: Dispatcher.DispatchOptions, private readonly fresh: (origin: string) => Dispatcher) {}

  onConnect(abort: (err?: Error) => void): void { this.inner.onConnect!(abort); }
  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    this.answered = true;
    return this.inner.onHeaders!(statusCode, headers, resume, statusText);
  }
  onData(chunk: Buffer): boolean { return this.inner.onData!(chunk); }
  onComplete(trailers: string[] | null): void { this.inner.onComplete!(trailers); }
  onError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (!this.answered && !this.retried && CONNECTION_LOST.has(code)) {
      this.retried = true;
      const client = this.fresh(String(this.opts.origin));
      client.dispatch(this.opts, this);
      // Closes once this one request is done: the connection is never pooled.
      void client.close().catch(() => undefined);
      return;
    }
    this.inner.onError!(err);
  }
  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.inner.onUpgrade!(statusCode, headers, socket);
  }
}

/**
 * The dispatcher reply-from sends through: undici's Agent, with the ClientGone of the
 * request being forwarded put around its handler, and small responses read whole
 * (SmallBodyReader). reply-from has no per-request hook for this, so web() hands the
 * ClientGone over synchronously (reply.from -> request -> dispatch in one call), and
 * request() hands its callback to dispatch() the same way.
 */
class ForwardingDispatcher extends DispatcherBase {
  handOver: ClientGone | undefined;
  private callback: ResponseCallback | undefined;
  constructor(private readonly agent: Agent, private readonly bufferLimit: number, private readonly fresh: (origin: string) => Dispatcher) {
    super();
    // reply-from calls request(opts, callback); undici's request() builds its handler and
    // calls dispatch() below within this call.
    const request = super.request.bind(this) as (...a: unknown[]) => unknown;
    this.request = ((...a: unknown[]) => {
      const gone = this.handOver;
      if (gone !== undefined && typeof a[1] === 'function') {
        // The ClientGone learns the body stream reply-from gets.
        const callback = a[1] as ResponseCallback;
        a[1] = ((err, data) => {
          if (data !== undefined) gone.body = data.body;
          callback(err, data);
        }) satisfies ResponseCallback;
      }
      this.callback = typeof a[1] === 'function' ? a[1] as ResponseCallback : undefined;
      try {
        return request(...a);
      } finally {
        this.callback = undefined;
      }
    }) as DispatcherBase['request'];
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const gone = this.handOver;
    this.handOver = undefined;
    const callback = this.callback;
    this.callback = undefined;
    const h = callback && this.bufferLimit > 0 ? new SmallBodyReader(handler, callback, this.bufferLimit, opts.method) : handler;
    const outer = gone === undefined ? h : gone.wrap(h);
    return this.agent.dispatch(opts, replayable(opts) ? new RetryOnFreshConnection(outer, opts, this.fresh) : outer);
  }
  override close(): Promise<void> { return this.agent.close(); }
  override destroy(): Promise<void> { return this.agent.destroy(); }
}

/**
 * reply-from never retries (the instance may have acted on a request): only the dispatcher
 * does, for replayable requests whose connection was lost before any answer.
 */
const neverRetry = (): null => null;

/** reply-from's `reply.from`, as the plugin decorates fastify's reply. */
type From = (url: string, opts: Record<string, unknown>) => FastifyReply;

export function createUpstreamProxy(opts: UpstreamProxyOptions): UpstreamProxy {
  // One undici pool per instance origin, no cap on connections per instance (a session's
  // long streams must never queue behind each other). Idle connections close after
  // keepAliveTimeout, or sooner when the instance's Keep-Alive hint says so (undici keeps
  // them 2 s less than the hint), never later: the sidecar keeps them 65 s, so the router
  // always closes an idle connection first; it honours `Connection: close` too.
  const keepAliveTimeout = opts.keepAliveTimeoutMs ?? 60_000;
  const connection = {
    headersTimeout: opts.idleTimeoutMs,
    bodyTimeout: opts.idleTimeoutMs,
    keepAliveTimeout,
    keepAliveMaxTimeout: keepAliveTimeout,
    pipelining: 1,
  };
  const agent = new Agent(connection);
  const dispatcher = new ForwardingDispatcher(agent, opts.bufferResponseBytes ?? 32 * 1024, (origin) => new Client(origin, connection));

  const wsAgent = new http.Agent({ keepAlive: false });
  const wsProxy = createProxyServer({ agent: wsAgent, xfwd: false, ws: true, prependPath: false });
  // Errors are reported through the per-call callback; this keeps the emitter from throwing.
  wsProxy.on('error', () => undefined);
  const targets = new Map<string, URL>();
  const target = (address: string): URL => {
    let u = targets.get(address);
    if (!u) {
      if (targets.size > 10_000) targets.clear();
      u = new URL(`http://${address}`);
      targets.set(address, u);
    }
    return u;
  };

  let closed = false;
  return {
    async register(app) {
      await app.register(replyFrom, { undici: dispatcher as never, disableRequestLogging: true, destroyAgent: false });
    },
    web(request, reply, address, path, headers, onError, onHeaders, gone) {
      dispatcher.handOver = gone;
      try {
        (reply as unknown as { from: From }).from(`http://${address}${path}`, {
          retryDelay: neverRetry,
          // The prepared headers, Host included: the instance sees the Host the client asked for.
          rewriteRequestHeaders: () => headers,
          rewriteHeaders: (fromInstance: IncomingHttpHeaders) => {
            const out = clientResponseHeaders(fromInstance);
            onHeaders?.(out);
            return out;
          },
          onError: (_reply: FastifyReply, { error }: { error: Error & { cause?: unknown } }) => {
            onError((error.cause ?? error) as NodeJS.ErrnoException);
          },
        });
      } finally {
        // Never left for the next request, even if reply.from threw before dispatching.
        dispatcher.handOver = undefined;
      }
    },
    ws(req, socket, head, address, onError) {
      wsProxy.ws(req, socket, head, { target: target(address) }, (err) => onError(err as NodeJS.ErrnoException));
    },
    close() {
      if (closed) return;
      closed = true;
      wsProxy.close();
      wsAgent.destroy();
      void agent.destroy().catch(() => undefined);
    },
  };
}
