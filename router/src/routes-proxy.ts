import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SESSION_HEADER, isValidSessionId, type SessionRecord } from '@warmpool/registry';
import { RouterError, rawHttpError } from './errors.js';
import { SESSION_COOKIE, checkProxyPath, checkSessionId, isCleanProxyPath, sessionIdOf } from './request-parsing.js';
import { clientGone } from './routes-sessions.js';
import type { RouterContext } from './context.js';

const SESSIONS_PREFIX = '/v1/sessions/';
const PROXY_URL = /^\/v1\/sessions\/([^/?#]*)\/proxy(?=$|[/?])/;

/** The instance-side path of `/v1/sessions/{id}/proxy{rest}`: `{rest}`, at least "/". */
function instancePath(url: string, matchedLength: number): string {
  const rest = url.slice(matchedLength);
  return rest === '' || rest.startsWith('?') ? `/${rest}` : rest;
}

async function routeOf(ctx: RouterContext, id: string): Promise<{ session: SessionRecord; credential: string }> {
  // Hot path: both from memory, no await.
  const session = ctx.directory.fromCache(id) ?? await ctx.directory.lookup(id);
  const credential = ctx.directory.credentialFor(session) ?? await ctx.directory.credential(session);
  ctx.directory.touch(session);
  return { session, credential };
}

function sessionCookie(s: SessionRecord, now: number): string {
  const maxAge = Math.max(0, Math.floor((s.expiresAt - now) / 1000));
  return `${SESSION_COOKIE}=${s.id}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax`;
}

/**
 * The proxied routes: `ANY /v1/sessions/{id}/proxy/{path}` and `ANY /{path}` (session from
 * the X-Warmpool-Session header or the warmpool_session cookie, or claimed implicitly for
 * the default service). Bodies are not parsed here: they stream to the instance.
 */
export function proxyRoutes(ctx: RouterContext) {
  return async (app: FastifyInstance): Promise<void> => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req: FastifyRequest, _payload: IncomingMessage, done: (err: null) => void) => done(null));

    const bySessionPath = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<void> => {
      const id = checkSessionId(request.params.id);
      const url = request.raw.url ?? '';
      const m = PROXY_URL.exec(url);
      if (!m || m[1] !== id) throw new RouterError('WARMPOOL_BAD_PATH', 'session id must be written literally in the path');
      const path = checkProxyPath(instancePath(url, m[0].length));
      const { session, credential } = await routeOf(ctx, id);
      reply.hijack();
      ctx.forwarder.web(request.raw, reply.raw, session, credential, path);
    };
    app.all('/v1/sessions/:id/proxy', bySessionPath);
    app.all('/v1/sessions/:id/proxy/*', bySessionPath);

    app.all('/*', async (request, reply) => {
      const url = request.raw.url ?? '/';
      checkProxyPath(url);
      const id = sessionIdOf(request.headers, SESSION_HEADER);
      if (id !== undefined) {
        const { session, credential } = await routeOf(ctx, id);
        reply.hijack();
        ctx.forwarder.web(request.raw, reply.raw, session, credential, url);
        return;
      }
      const service = ctx.config.defaultService;
      if (!service) {
        throw new RouterError('WARMPOOL_NOT_FOUND', `no route for ${url.split('?')[0]}: send ${SESSION_HEADER} or create a session with POST /v1/sessions`);
      }
      const claimed = await ctx.claimer.claim(service, { waitMs: ctx.config.wait.defaultSec * 1000, signal: clientGone(reply) });
      const session = claimed.session;
      const credential = await ctx.directory.credential(session);
      const cookie = sessionCookie(session, Date.now());
      const res = reply.raw;
      // Also on the error path (instance unreachable): the client learns its session either way.
      res.setHeader(SESSION_HEADER, session.id);
      res.setHeader('set-cookie', cookie);
      reply.hijack();
      ctx.forwarder.web(request.raw, res, session, credential, url, (proxyRes) => {
        const theirs = proxyRes.headers['set-cookie'] ?? [];
        proxyRes.headers['set-cookie'] = [...theirs, cookie];
        proxyRes.headers[SESSION_HEADER] = session.id;
      });
    });
  };
}

/** Paths the router answers itself, never proxied by header or cookie. */
function isRouterPath(url: string): boolean {
  return url.startsWith('/v1/sessions') || url.startsWith('/v1/services') || url.startsWith('/v1/dashboard') || url === '/healthz'
    || url === '/dashboard' || url.startsWith('/dashboard?') || url === '/readyz' || url === '/metrics'
    || url.startsWith('/healthz?') || url.startsWith('/readyz?') || url.startsWith('/metrics?');
}

/**
 * The hot path, before fastify routing: a request of an established session whose record is
 * in the cache goes straight to the proxy, synchronously. Anything else (cache miss, bad
 * input, implicit session, router paths) returns false and takes the fastify routes above,
 * which give the same answer for the same request, only slower.
 */
export function fastProxy(ctx: RouterContext): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? '/';
    let id: string | undefined;
    let path: string;
    if (url.startsWith(SESSIONS_PREFIX)) {
      const m = PROXY_URL.exec(url);
      if (!m) return false;
      id = m[1];
      path = instancePath(url, m[0].length);
    } else {
      const h = req.headers[SESSION_HEADER];
      if (typeof h !== 'string' || isRouterPath(url)) return false;
      id = h;
      path = url;
    }
    if (id === undefined || !isValidSessionId(id) || !isCleanProxyPath(path)) return false;
    const session = ctx.directory.fromCache(id);
    if (!session) return false;
    const credential = ctx.directory.credentialFor(session);
    if (!credential) return false;
    ctx.directory.touch(session);
    ctx.forwarder.web(req, res, session, credential, path);
    return true;
  };
}

/** WebSocket upgrades (fastify does not see them): same session rules as the HTTP routes. */
export function upgradeHandler(ctx: RouterContext) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    void (async () => {
      const url = req.url ?? '/';
      let id: string | undefined;
      let path: string;
      const m = PROXY_URL.exec(url);
      if (m) {
        id = checkSessionId(m[1]);
        path = instancePath(url, m[0].length);
      } else {
        if (url.startsWith(SESSIONS_PREFIX)) throw new RouterError('WARMPOOL_NOT_FOUND', 'no WebSocket route here');
        id = sessionIdOf(req.headers, SESSION_HEADER);
        path = url;
      }
      checkProxyPath(path);
      if (id === undefined) throw new RouterError('WARMPOOL_NOT_FOUND', 'a WebSocket needs a session (path, header or cookie)');
      const { session, credential } = await routeOf(ctx, id);
      ctx.forwarder.ws(req, socket, head, session, credential, path);
      // A WebSocket conversation is traffic too: keep the session alive while it is open.
      const keep = setInterval(() => ctx.directory.touch(session), Math.max(1000, (session.idleTimeoutSec * 1000) / 3));
      keep.unref();
      socket.once('close', () => { clearInterval(keep); ctx.directory.touch(session); });
    })().catch((err: unknown) => {
      if (socket.writable) socket.end(rawHttpError(err));
      else socket.destroy();
    });
  };
}
