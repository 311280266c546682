import type { FastifyInstance, FastifyReply } from 'fastify';
import { SESSION_HEADER, type SessionRecord } from '@warmpool/registry';
import { RouterError } from './errors.js';
import { checkIdempotencyKey, checkServiceName, checkSessionId, parseWait } from './request-parsing.js';
import type { RouterContext } from './context.js';

/** The JSON shape of a session in API responses. */
export function sessionBody(s: SessionRecord): Record<string, unknown> {
  return {
    sessionId: s.id,
    service: s.service,
    instanceId: s.instanceId,
    createdAt: new Date(s.createdAt).toISOString(),
    expiresAt: new Date(s.expiresAt).toISOString(),
    idleTimeoutSec: s.idleTimeoutSec,
  };
}

/** An AbortSignal that fires when the client goes away before the response is written. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.once('close', () => { if (!reply.raw.writableFinished) ac.abort(); });
  return ac.signal;
}

/** POST /v1/sessions, GET and DELETE /v1/sessions/{id}. */
export function sessionRoutes(ctx: RouterContext) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Querystring: { wait?: string } }>('/v1/sessions', async (request, reply) => {
      const body = request.body;
      if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
        // A JSON body sent as text/plain is parsed as text: say so (other types fastify
        // refuses before this route; the error handler says the same for them).
        const type = request.headers['content-type'];
        if (type && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
          throw new RouterError('WARMPOOL_UNSUPPORTED_MEDIA_TYPE', `the body is ${type.split(';')[0]!.trim()}; send it as Content-Type: application/json, e.g. {"service":"chatbot"}`);
        }
        throw new RouterError('WARMPOOL_BAD_REQUEST', 'body must be a JSON object like {"service":"chatbot"}');
      }
      const given = (body as { service?: unknown } | undefined)?.service;
      if (given === undefined && !ctx.config.defaultService) {
        throw new RouterError('WARMPOOL_INVALID_SERVICE', 'body must name a service: {"service":"chatbot"}');
      }
      const service = checkServiceName(given === undefined ? ctx.config.defaultService : given);
      const waitSec = parseWait(request.query.wait, ctx.config.wait.defaultSec, ctx.config.wait.maxSec);
      const idempotencyKey = checkIdempotencyKey(request.headers['idempotency-key']);
      const r = await ctx.claimer.claim(service, {
        waitMs: waitSec * 1000,
        signal: clientGone(reply),
        ...(idempotencyKey ? { idempotencyKey } : {}),
      });
      reply.code(201).header('location', `/v1/sessions/${r.session.id}`).header(SESSION_HEADER, r.session.id);
      if (!r.created) reply.header('idempotent-replayed', 'true');
      return sessionBody(r.session);
    });

    app.get<{ Params: { id: string } }>('/v1/sessions/:id', async (request) => {
      const id = checkSessionId(request.params.id);
      return { ...sessionBody(await ctx.directory.lookup(id)), state: 'active' };
    });

    app.delete<{ Params: { id: string } }>('/v1/sessions/:id', async (request, reply) => {
      const id = checkSessionId(request.params.id);
      // lookup first: 404 for unknown and 410 for already-ended sessions.
      await ctx.directory.lookup(id);
      const ended = await ctx.registry.endSession(id, 'ended');
      if (!ended) await ctx.directory.lookup(id); // raced with another ender: 410 / 404
      reply.code(204);
      return reply.send();
    });
  };
}
