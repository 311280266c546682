import http from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Registry } from '@warmpool/registry';
import { answerAsHttp1, isWebSocketUpgrade } from '@warmpool/registry/http-upgrade';
import { routerConfig, type RouterConfig, type RouterConfigInput } from './config.js';
import { RouterError, httpErrorOf, rawHttpError } from './errors.js';
import { createMetrics } from './metrics.js';
import { StageMetrics } from './stage-metrics.js';
import { createUpstreamProxy } from './proxy-adapter.js';
import { SessionDirectory } from './session-directory.js';
import { SessionClaimer } from './session-claimer.js';
import { SessionForwarder } from './session-forwarder.js';
import { sessionRoutes } from './routes-sessions.js';
import { adminRoutes, opsRoutes } from './routes-admin.js';
import { proxyRoutes, upgradeHandler } from './routes-proxy.js';
import type { RouterContext } from './context.js';
import { dashboardRoutes } from './dashboard.js';
import { PoolMonitor } from './pool-monitor.js';

export interface BuildRouterOptions {
  /** The registry this router claims from and routes with (the caller owns and closes it). */
  registry: Registry;
  config?: RouterConfigInput | RouterConfig;
  /** A pino logger; none (silent) by default. */
  logger?: FastifyBaseLogger;
  now?: () => number;
  newSessionId?: () => string;
  /** Process metrics (event loop, memory) on /metrics; off by default (tests build many routers). */
  defaultMetrics?: boolean;
}

export type WarmpoolRouter = FastifyInstance & { warmpool: RouterContext };

/** The response a client connection is writing now, if any (Node's own bookkeeping). */
function responseOn(socket: Socket): http.ServerResponse | undefined {
  return (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage ?? undefined;
}

/**
 * The router as a fastify instance that never listens by itself: tests use `inject()` or
 * `listen({ port: 0 })`, startRouter() wires etcd and listens. Closing it ends waits,
 * closes upstream sockets and leaves the registry to its owner.
 */
export function buildRouter(opts: BuildRouterOptions): WarmpoolRouter {
  const config = routerConfig(opts.config as RouterConfigInput);
  const now = opts.now ?? Date.now;
  const ctxRef: { ctx?: RouterContext; closing?: boolean } = {};
  // Client connections, so that stopping closes every one with no response under way at
  // once, and the others as soon as their response is written: Node's own sweep on close
  // skips a connection that has not sent a request yet and one whose response is still
  // under way, and the stop would then wait out its headers or keep-alive timeout.
  const connections = new Set<Socket>();

  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: the router logs per request only on failures, and those
    // lines name the request themselves (a child logger costs a proxied request ~4% of its CPU).
    childLoggerFactory: (logger) => logger,
    bodyLimit: config.limits.maxJsonBytes,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 256 },
    serverFactory: (handler) => {
      const server = http.createServer({
        maxHeaderSize: config.limits.maxHeaderBytes,
        headersTimeout: config.limits.headersTimeoutMs,
        // Streams (SSE, long completions, uploads) outlive any fixed request deadline; the
        // upstream idle timeout bounds them instead.
        requestTimeout: 0,
        keepAliveTimeout: 65_000,
      }, handler);
      server.on('connection', (socket: Socket) => {
        if (ctxRef.closing) { socket.destroy(); return; }
        connections.add(socket);
        socket.once('close', () => connections.delete(socket));
      });
      server.on('upgrade', (req, socket, head) => {
        // Only WebSockets are tunnelled; any other offer (h2c from `curl --http2`) is
        // answered as the plain HTTP/1.1 request it also is, on the same connection.
        if (!isWebSocketUpgrade(req)) { answerAsHttp1(server, req, socket, head); return; }
        // A WebSocket runs on until it ends or the process stops; not an HTTP connection.
        connections.delete(socket as Socket);
        const ctx = ctxRef.ctx;
        if (!ctx) { socket.destroy(); return; }
        upgradeHandler(ctx)(req, socket, head);
      });
      // Not a forward proxy: CONNECT gets an answer rather than a dropped connection.
      server.on('connect', (_req, socket: Socket) => {
        socket.on('error', () => socket.destroy());
        socket.end(rawHttpError(new RouterError('WARMPOOL_METHOD_NOT_ALLOWED', 'CONNECT is not supported here')));
      });
      return server;
    },
    clientErrorHandler: (err, socket: Socket) => {
      // A response already under way (a body broke mid-stream) can only be cut off.
      const inFlight = responseOn(socket);
      if (socket.writable && !inFlight?.headersSent) socket.end(rawHttpError(err));
      else socket.destroy();
    },
  });

  const metricsSources = {
    waiting: () => ctxRef.ctx?.claimer.waitingByService() ?? new Map<string, number>(),
    activeSessions: () => {
      const out = new Map<string, number>();
      for (const { value } of ctxRef.ctx?.directory.cached()?.sessions.values() ?? []) {
        out.set(value.service, (out.get(value.service) ?? 0) + 1);
      }
      return out;
    },
    registryConnected: () => (ctxRef.ctx?.directory.link() === 'live' ? 1 : 0),
    pools: () => pools.current(),
    usage: () => pools.usageTotals(),
    watchTraffic: () => opts.registry.store.watchTraffic?.(),
  };
  const pools = new PoolMonitor(now);
  const metrics = createMetrics(metricsSources, { defaultMetrics: opts.defaultMetrics ?? false });
  // onLive runs once the cache is listed, long after `claimer` below is initialised.
  const stages = new StageMetrics(metrics);
  const directory = new SessionDirectory(opts.registry, now, (cache) => { claimer.attach(cache); stages.attach(cache); pools.attach(cache); });
  const claimer = new SessionClaimer(opts.registry, directory, metrics, {
    now, ...(opts.newSessionId ? { newSessionId: opts.newSessionId } : {}),
    onError: (err) => app.log.warn({ err }, 'could not publish the waiting sessions; retrying'),
  });
  const proxy = createUpstreamProxy({
    idleTimeoutMs: config.proxy.idleTimeoutMs, keepAliveTimeoutMs: config.proxy.keepAliveTimeoutMs, bufferResponseBytes: config.proxy.bufferResponseBytes,
  });
  const forwarder = new SessionForwarder(proxy, metrics, config.limits.maxBodyBytes, (s) => directory.touch(s), app.log);
  const ctx: RouterContext = { config, registry: opts.registry, directory, claimer, forwarder, metrics, pools, log: app.log };
  ctxRef.ctx = ctx;

  app.setErrorHandler((err, request, reply) => {
    const h = httpErrorOf(err);
    // fastify refuses a body it has no parser for before the route runs ("Unsupported Media
    // Type"): for the session API, say what to send (curl -d without -H sends a form).
    if (h.body.error.code === 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE' && request.url.startsWith('/v1/sessions') && !request.url.startsWith('/v1/sessions/')) {
      const type = request.headers['content-type']?.split(';')[0]?.trim();
      h.body.error.message = `the body is ${type ? type : 'sent without a Content-Type'}; send it as Content-Type: application/json, e.g. {"service":"chatbot"}`;
    }
    if (h.status >= 500 && h.status !== 503) request.log.error({ err, reqId: request.id, method: request.method, url: request.url }, 'request failed');
    reply.code(h.status).headers(h.headers).send(h.body);
  });
  app.setNotFoundHandler((request, reply) => {
    const h = httpErrorOf({ statusCode: 404, message: `no route for ${request.method} ${request.url.split('?')[0]}` });
    reply.code(h.status).send(h.body);
  });

  app.register(opsRoutes(ctx));
  app.register(adminRoutes(ctx));
  app.register(sessionRoutes(ctx));
  // reply-from logs every client that goes away mid-response as a warning; the forwarder
  // logs the failures that matter (the instance's) itself.
  app.register(proxyRoutes(ctx), { logLevel: 'error' });
  app.register(dashboardRoutes(ctx, { now }));

  // Start listing the registry at once; requests that come before it is live wait for it.
  app.addHook('onReady', async () => {
    directory.follow();
    directory.cache().catch((err: unknown) => app.log.warn({ err }, 'registry cache not live yet; /readyz turns ready when it is'));
  });
  app.addHook('preClose', async () => {
    ctxRef.closing = true;
    claimer.close();
    for (const socket of connections) {
      const res = responseOn(socket);
      if (!res) { socket.destroy(); continue; }
      // A response under way finishes; then its connection closes rather than idling on.
      if (!res.headersSent) res.setHeader('connection', 'close');
      else res.once('finish', () => socket.end());
    }
  });
  app.addHook('onClose', async () => {
    await claimer.stopPublishing();
    pools.close();
    proxy.close();
    forwarder.close();
    stages.detach();
    directory.close();
  });

  return Object.assign(app, { warmpool: ctx }) as WarmpoolRouter;
}
