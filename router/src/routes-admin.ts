import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { poolView } from '@warmpool/registry';
import { RouterError } from './errors.js';
import { checkServiceName } from './request-parsing.js';
import type { RouterContext } from './context.js';

function sameSecret(a: string, b: string): boolean {
  // Hash first: equal lengths for timingSafeEqual, and no length leak.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** /v1/services and /v1/services/{name}/instances (bearer token when configured). */
export function adminRoutes(ctx: RouterContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const token = ctx.config.adminToken;
    if (token) {
      app.addHook('onRequest', async (request: FastifyRequest) => {
        const h = request.headers.authorization;
        const given = typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
        if (!given || !sameSecret(given, token)) {
          throw new RouterError('WARMPOOL_UNAUTHORIZED', 'a valid bearer token is required', { headers: { 'www-authenticate': 'Bearer realm="warmpool"' } });
        }
      });
    }

    app.get('/v1/services', async () => {
      const cache = await ctx.directory.cache();
      const sessions = new Map<string, number>();
      for (const { value } of cache.sessions.values()) sessions.set(value.service, (sessions.get(value.service) ?? 0) + 1);
      const now = Date.now();
      const services = [...cache.services.values()].map(({ value: spec }) => {
        const pool = poolView(cache, spec, now);
        const states: Record<string, number> = { booting: 0, ready: 0, claimed: 0, draining: 0, failed: 0 };
        for (const i of cache.instancesOf(spec.name)) states[i.state] = (states[i.state] ?? 0) + 1;
        return {
          name: spec.name,
          image: spec.image,
          warm: spec.warm,
          instances: states,
          readyUnclaimed: cache.ready.count(spec.name),
          sessions: sessions.get(spec.name) ?? 0,
          waiting: ctx.claimer.queue.waiting(spec.name),
          /** Pool size now (static warm or the policy's) and sessions waiting in every router. */
          target: pool.size,
          waitingFleet: pool.waiting,
          slots: pool.slots,
        };
      });
      return { services };
    });

    app.get<{ Params: { name: string } }>('/v1/services/:name/instances', async (request) => {
      const name = checkServiceName(request.params.name);
      const cache = await ctx.directory.cache();
      if (!cache.services.has(name)) throw new RouterError('WARMPOOL_UNKNOWN_SERVICE', `no service named "${name}"`);
      const instances = cache.instancesOf(name).map((i) => ({
        id: i.id, host: i.host, state: i.state, address: i.address, createdAt: new Date(i.createdAt).toISOString(),
        readyAt: i.readyAt === null ? null : new Date(i.readyAt).toISOString(), bootMs: i.bootMs,
        sessionId: cache.claims.get(i.id)?.value.sessionId ?? null,
      }));
      return { service: name, instances };
    });
  };
}

/** /healthz, /readyz, /metrics. */
export function opsRoutes(ctx: RouterContext) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/healthz', async () => ({ status: 'ok' }));
    // Ready: a full copy of the registry, watched live. Degraded: the link to the registry
    // is down; established sessions are still served from the copy, new sessions get 503.
    // A degraded router answers 200 (it can serve), or 503 with ?strict=true for a balancer
    // that should send it no traffic at all then.
    app.get('/readyz', {
      schema: { querystring: { type: 'object', properties: { strict: { type: 'boolean' } }, additionalProperties: false } },
    }, async (request, reply) => {
      const cache = ctx.directory.cached();
      const link = ctx.directory.link();
      if (link === 'not-ready') {
        reply.code(503).header('retry-after', '1');
        return { status: 'not-ready', registry: cache?.state ?? 'syncing' };
      }
      if (link === 'disconnected') {
        if ((request.query as { strict?: boolean }).strict) reply.code(503).header('retry-after', '1');
        return {
          status: 'degraded', registry: 'disconnected', newSessions: false,
          disconnectedSec: Math.round((Date.now() - (cache!.disconnectedSince ?? Date.now())) / 1000),
        };
      }
      return { status: 'ready', registry: 'live' };
    });
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', ctx.metrics.contentType);
      return ctx.metrics.render();
    });
  };
}
