// The only file that imports the proxy library (see docs/decisions/proxy.md for why
// http-proxy-3). Everything else talks to the small UpstreamProxy interface.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { stripResponseHopByHop } from './forward-headers.js';

export interface UpstreamProxyOptions {
  /** An upstream socket idle this long fails the request with code ETIMEDOUT. */
  idleTimeoutMs: number;
  maxFreeSockets: number;
}

/** Called with the instance's response before it is written out (add headers here). */
export type ResponseHook = (proxyRes: IncomingMessage, res: ServerResponse) => void;
/** Called once when the hop to the instance fails; the caller answers the client. */
export type ProxyErrorHandler = (err: NodeJS.ErrnoException) => void;

export interface UpstreamProxy {
  /** Forwards `req` (headers already prepared) to http://{address}{req.url}, streaming both ways. */
  web(req: IncomingMessage, res: ServerResponse, address: string, onError: ProxyErrorHandler, onResponse?: ResponseHook): void;
  /** Forwards a WebSocket upgrade; on failure the client socket is destroyed after onError. */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, address: string, onError: ProxyErrorHandler): void;
  /** Closes the kept-alive upstream sockets. Idempotent. */
  close(): void;
}

const HOOK = Symbol('warmpool.responseHook');
type HookedRequest = IncomingMessage & { [HOOK]?: ResponseHook };

export function createUpstreamProxy(opts: UpstreamProxyOptions): UpstreamProxy {
  // One keep-alive pool per instance address (Agent keys by host:port); LIFO reuses the
  // warmest socket and lets idle ones time out.
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: opts.maxFreeSockets, scheduling: 'lifo', timeout: opts.idleTimeoutMs });
  const proxy = createProxyServer({ agent, xfwd: false, ws: true, prependPath: false });
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

  proxy.on('proxyReq', (proxyReq) => {
    proxyReq.setTimeout(opts.idleTimeoutMs, () => {
      proxyReq.destroy(Object.assign(new Error('upstream idle timeout'), { code: 'ETIMEDOUT' }));
    });
  });
  proxy.on('proxyRes', (proxyRes, req, res) => {
    stripResponseHopByHop(proxyRes.headers);
    // An instance that dies mid-body must not leave the client hanging on a half response.
    proxyRes.once('error', () => res.destroy());
    proxyRes.once('close', () => { if (!proxyRes.complete) res.destroy(); });
    (req as HookedRequest)[HOOK]?.(proxyRes, res);
  });
  // Errors are reported through the per-call callback; this keeps the emitter from throwing.
  proxy.on('error', () => undefined);

  let closed = false;
  return {
    web(req, res, address, onError, onResponse) {
      if (onResponse) (req as HookedRequest)[HOOK] = onResponse;
      proxy.web(req, res, { target: target(address) }, (err) => onError(err as NodeJS.ErrnoException));
    },
    ws(req, socket, head, address, onError) {
      proxy.ws(req, socket, head, { target: target(address) }, (err) => onError(err as NodeJS.ErrnoException));
    },
    close() {
      if (closed) return;
      closed = true;
      proxy.close();
      agent.destroy();
    },
  };
}
