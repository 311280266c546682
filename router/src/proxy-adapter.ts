// The only file that imports the proxy libraries (see docs/decisions/proxy.md for why):
// plain HTTP goes through @fastify/reply-from on an undici pool, WebSocket upgrades through
// http-proxy-3. Everything else talks to the small UpstreamProxy interface.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import replyFrom from '@fastify/reply-from';
import { createProxyServer } from 'http-proxy-3';
import { Agent, type Dispatcher } from 'undici';
import { stripResponseHopByHop } from './forward-headers.js';

export interface UpstreamProxyOptions {
  /**
   * The instance sending nothing this long fails the request: before its response
   * headers (504), or between two body chunks (the response is cut off).
   */
  idleTimeoutMs: number;
  /** Idle kept-alive connections to one instance are closed after this long. */
  keepAliveTimeoutMs?: number;
}

/** Changes the instance's response headers before they are written out (add cookies here). */
export type ResponseHeadersHook = (headers: IncomingHttpHeaders) => void;
/** Called once when the hop to the instance fails; the caller answers the client. */
export type ProxyErrorHandler = (err: NodeJS.ErrnoException) => void;

export interface UpstreamProxy {
  /** Registers the HTTP engine on the fastify instance whose routes call web(). */
  register(app: FastifyInstance): Promise<void>;
  /**
   * Forwards a request (headers already prepared, body = the request stream or none) to
   * http://{address}{path}, streaming the response back as it arrives. A client that goes
   * away aborts the upstream request, also before the instance has answered.
   */
  web(request: FastifyRequest, reply: FastifyReply, address: string, path: string, onError: ProxyErrorHandler, onHeaders?: ResponseHeadersHook, gone?: ClientGone): void;
  /** Forwards a WebSocket upgrade; on failure the client socket is destroyed after onError. */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, address: string, onError: ProxyErrorHandler): void;
  /** Closes the kept-alive upstream connections. Idempotent. */
  close(): void;
}

/**
 * Fired when the client of a forwarded request goes away. The cheapest abort signal undici
 * accepts (EventEmitter-shaped, one listener): an AbortController per request costs more
 * than the rest of the hop.
 */
export class ClientGone {
  aborted = false;
  reason: Error | undefined;
  private listener: (() => void) | undefined;
  on(_event: 'abort', fn: () => void): this { this.listener = fn; return this; }
  once(event: 'abort', fn: () => void): this { return this.on(event, fn); }
  addListener(event: 'abort', fn: () => void): this { return this.on(event, fn); }
  removeListener(): this { this.listener = undefined; return this; }
  off(): this { return this.removeListener(); }
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = Object.assign(new Error('the client went away'), { code: 'UND_ERR_ABORTED' });
    const fn = this.listener;
    this.listener = undefined;
    fn?.();
  }
}

/** A proxied request is never retried by the router: the instance may have acted on it. */
const neverRetry = (): null => null;

/** The instance sees the Host the client asked for (X-Forwarded-Host says it too). */
function keepClientHost(request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const host = request.headers.host;
  if (host !== undefined) headers.host = host;
  else delete headers.host;
  return headers;
}

/** reply-from's `reply.from`, as the plugin decorates fastify's reply. */
type From = (url: string, opts: Record<string, unknown>) => FastifyReply;

export function createUpstreamProxy(opts: UpstreamProxyOptions): UpstreamProxy {
  // One undici pool per instance origin, no cap on connections per instance (a session's
  // long streams must never queue behind each other).
  const agent = new Agent({
    headersTimeout: opts.idleTimeoutMs,
    bodyTimeout: opts.idleTimeoutMs,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 60_000,
    pipelining: 1,
  });
  // reply-from has no per-request abort signal: the signal of the request being forwarded
  // is handed over here, synchronously (reply.from -> dispatcher.request in one call).
  let handOver: ClientGone | undefined;
  const dispatcher = {
    request(o: Dispatcher.RequestOptions, cb: (err: Error | null, data: Dispatcher.ResponseData) => void): void {
      const signal = handOver;
      handOver = undefined;
      agent.request(signal ? { ...o, signal } : o, cb as never);
    },
    close: () => agent.close(),
    destroy: () => agent.destroy(),
  };

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
    web(request, reply, address, path, onError, onHeaders, gone) {
      handOver = gone;
      try {
        (reply as unknown as { from: From }).from(`http://${address}${path}`, {
          retryDelay: neverRetry,
          rewriteRequestHeaders: keepClientHost,
          rewriteHeaders: (headers: IncomingHttpHeaders) => {
            stripResponseHopByHop(headers);
            onHeaders?.(headers);
            return headers;
          },
          onError: (_reply: FastifyReply, { error }: { error: Error & { cause?: unknown } }) => {
            onError((error.cause ?? error) as NodeJS.ErrnoException);
          },
        });
      } finally {
        // Never left for the next request, even if reply.from threw before dispatching.
        handOver = undefined;
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
