import type { IncomingMessage } from 'node:http';
import { Transform, type Duplex, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SESSION_HEADER, type SessionRecord } from '@warmpool/registry';
import { RouterError, rawHttpError } from './errors.js';
import { SESSION_COOKIE, checkProxyPath, checkSessionId, cookieValue, sessionIdOf } from './request-parsing.js';
import { clientGone } from './routes-sessions.js';
import type { RouterContext } from './context.js';

const SESSIONS_PREFIX = '/v1/sessions/';
const PROXY_URL = /^\/v1\/sessions\/([^/?#]*)\/proxy(?=$|[/?])/;

/**
 * The router's own paths (router/README.md): `/v1/sessions*`, `/v1/services*`,
 * `/v1/dashboard*`, `/healthz`, `/readyz`, `/metrics`, `/dashboard` and its two assets. They
 * are never proxied by header or cookie, since a request there without a session would start
 * an implicit one and take a warm instance. Routes with the methods they take (fastify
 * answers HEAD with every GET); an app's other `/dashboard/...` paths are proxied as ever.
 */
const GET = 'GET, HEAD';
const OWN_ROUTES: { path: RegExp; allow: string }[] = [
  { path: /^\/v1\/sessions$/, allow: 'POST' },
  { path: /^\/v1\/sessions\/[^/]+$/, allow: 'GET, HEAD, DELETE' },
  { path: /^\/v1\/services(\/[^/]+\/instances)?$/, allow: GET },
  { path: /^\/(healthz|readyz|metrics|dashboard|dashboard\/uplot\.min\.(js|css))$/, allow: GET },
  { path: /^\/v1\/dashboard\/(state|history|events)$/, allow: GET },
];
const OWN_PREFIXES = ['/v1/sessions', '/v1/services', '/v1/dashboard'];

/** The path of a request URL (no query, no fragment). */
function pathOf(url: string): string {
  const end = url.search(/[?#]/);
  return end < 0 ? url : url.slice(0, end);
}

/** Whether `url` is one of the router's own paths (see OWN_ROUTES). */
export function isOwnPath(url: string): boolean {
  const path = pathOf(url);
  return OWN_ROUTES.some((r) => r.path.test(path)) || OWN_PREFIXES.some((p) => path.startsWith(p));
}

/**
 * Refuses a request to one of the router's own paths that no route of the router took: 405
 * (with Allow) on a path it serves with other methods, 400 for a malformed session id
 * (one too long for the route), 404 otherwise. Returns for any other path.
 */
export function refuseOwnPath(method: string, url: string): void {
  if (!isOwnPath(url)) return;
  const path = pathOf(url);
  const shown = path.length > 120 ? `${path.slice(0, 120)}...` : path;
  const route = OWN_ROUTES.find((r) => r.path.test(path));
  if (route) {
    if (path.startsWith(SESSIONS_PREFIX)) checkSessionId(path.slice(SESSIONS_PREFIX.length));
    throw new RouterError('WARMPOOL_METHOD_NOT_ALLOWED', `${method} is not allowed on the router's ${shown} (allowed: ${route.allow})`, { headers: { allow: route.allow } });
  }
  const id = path.startsWith(SESSIONS_PREFIX) ? path.slice(SESSIONS_PREFIX.length).split('/')[0] : '';
  if (id) checkSessionId(id);
  throw new RouterError('WARMPOOL_NOT_FOUND', `no route ${method} ${shown} on the router; its own paths are never proxied (reach an app path there through /v1/sessions/{id}/proxy/...)`);
}

/** The instance-side path of `/v1/sessions/{id}/proxy{rest}`: `{rest}`, at least "/". */
function instancePath(url: string, matchedLength: number): string {
  const rest = url.slice(matchedLength);
  return rest === '' || rest.startsWith('?') ? `/${rest}` : rest;
}

async function routeOf(ctx: RouterContext, id: string): Promise<{ session: SessionRecord; credential: string }> {
  const session = ctx.directory.fromCache(id) ?? await ctx.directory.lookup(id);
  const credential = ctx.directory.credentialFor(session) ?? await ctx.directory.credential(session);
  ctx.directory.touch(session);
  return { session, credential };
}

/**
 * Forwards a request of session `id`. Hot path: session and credential from the watch
 * cache, forwarded synchronously (undefined: fastify waits for reply-from to answer). A
 * session not in the cache yet is looked up in etcd (a promise of the reply).
 */
function forwardTo(ctx: RouterContext, request: FastifyRequest, reply: FastifyReply, id: string, path: string): Promise<FastifyReply> | undefined {
  const cached = ctx.directory.fromCache(id);
  const credential = cached === undefined ? undefined : ctx.directory.credentialFor(cached);
  if (cached !== undefined && credential !== undefined) {
    ctx.directory.touch(cached);
    ctx.forwarder.web(request, reply, cached, credential, path);
    return undefined;
  }
  return routeOf(ctx, id).then(({ session, credential: c }) => ctx.forwarder.web(request, reply, session, c, path));
}

/**
 * The session cookie for `s`, set again on every response of the cookie route: it lasts as
 * long as the session would with no more traffic (its idle timeout, within its lifetime),
 * never longer, so a browser does not keep a session id past its end.
 */
function sessionCookie(s: SessionRecord, now: number): string {
  const maxAge = Math.max(0, Math.min(s.idleTimeoutSec, Math.floor((s.expiresAt - now) / 1000)));
  return `${SESSION_COOKIE}=${s.id}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax`;
}

/** Tells a browser to forget its session cookie. */
const CLEAR_COOKIE = `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`;

/** Why a session id a browser holds no longer works: it names no session that can serve. */
const DEAD_SESSION = new Set(['WARMPOOL_UNKNOWN_SESSION', 'WARMPOOL_SESSION_ENDED', 'WARMPOOL_INVALID_SESSION_ID']);

function isDeadSession(err: unknown): err is RouterError {
  return err instanceof RouterError && DEAD_SESSION.has(err.code);
}

/** The same error, answered with a Set-Cookie that clears the session cookie. */
function clearingCookie(err: RouterError): RouterError {
  return new RouterError(err.code, err.message, { cause: err, headers: { ...err.headers, 'set-cookie': CLEAR_COOKIE } });
}

/**
 * A proxied request body, as the instance receives it: the request stream itself when its
 * length is declared (checked against the limit before forwarding), or, when chunked, the
 * stream counted as it passes and cut off with 413 past the limit.
 */
function limitedBody(payload: IncomingMessage, maxBytes: number): Readable {
  if (payload.headers['content-length'] !== undefined) return payload;
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > maxBytes) cb(new RouterError('WARMPOOL_BODY_TOO_LARGE', `request body exceeds ${maxBytes} bytes`));
      else cb(null, chunk);
    },
  });
  payload.on('error', (err) => counted.destroy(err));
  return payload.pipe(counted);
}

/**
 * The proxied routes: `ANY /v1/sessions/{id}/proxy/{path}` and `ANY /{path}` (session from
 * the X-Warmpool-Session header or the warmpool_session cookie, or claimed implicitly for
 * the default service). Bodies are not parsed here: they stream to the instance.
 */
export function proxyRoutes(ctx: RouterContext) {
  return async (app: FastifyInstance): Promise<void> => {
    await ctx.forwarder.register(app);
    app.removeAllContentTypeParsers();
    const maxBody = ctx.config.limits.maxBodyBytes;
    app.addContentTypeParser('*', (_req: FastifyRequest, payload: IncomingMessage, done: (err: null, body: Readable) => void) => done(null, limitedBody(payload, maxBody)));

    const bySessionPath = (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<FastifyReply> | undefined => {
      const id = checkSessionId(request.params.id);
      const url = request.raw.url ?? '';
      const m = PROXY_URL.exec(url);
      if (!m || m[1] !== id) throw new RouterError('WARMPOOL_BAD_PATH', 'session id must be written literally in the path');
      return forwardTo(ctx, request, reply, id, checkProxyPath(instancePath(url, m[0].length)));
    };
    app.all('/v1/sessions/:id/proxy', bySessionPath);
    app.all('/v1/sessions/:id/proxy/*', bySessionPath);

    const implicitSession = async (request: FastifyRequest, reply: FastifyReply, url: string): Promise<FastifyReply> => {
      const service = ctx.config.defaultService;
      if (!service) {
        throw new RouterError('WARMPOOL_NOT_FOUND', `no route for ${url.split('?')[0]}: send ${SESSION_HEADER} or create a session with POST /v1/sessions`);
      }
      const claimed = await ctx.claimer.claim(service, { waitMs: ctx.config.wait.defaultSec * 1000, signal: clientGone(reply) });
      const session = claimed.session;
      const credential = await ctx.directory.credential(session);
      // Also on the error path (instance unreachable): the client learns its session either way.
      reply.header(SESSION_HEADER, session.id);
      reply.header('set-cookie', sessionCookie(session, Date.now()));
      return ctx.forwarder.web(request, reply, session, credential, url, (h) => {
        h[SESSION_HEADER] = session.id;
      });
    };

    /**
     * The cookie route: the browser's session, its cookie renewed with every response. A
     * cookie naming a session that cannot serve any more (ended, expired, unknown,
     * malformed) starts a fresh implicit session when there is a default service, and is
     * cleared otherwise: a browser is never locked out by a cookie it holds.
     */
    const byCookie = (request: FastifyRequest, reply: FastifyReply, raw: string, url: string): Promise<FastifyReply> | undefined => {
      const cached = ctx.directory.fromCache(raw);
      const credential = cached === undefined ? undefined : ctx.directory.credentialFor(cached);
      if (cached !== undefined && credential !== undefined) {
        ctx.directory.touch(cached);
        reply.header('set-cookie', sessionCookie(cached, Date.now()));
        ctx.forwarder.web(request, reply, cached, credential, url);
        return undefined;
      }
      return (async () => {
        try {
          const { session, credential: c } = await routeOf(ctx, checkSessionId(raw));
          reply.header('set-cookie', sessionCookie(session, Date.now()));
          return ctx.forwarder.web(request, reply, session, c, url);
        } catch (err) {
          if (!isDeadSession(err)) throw err;
          if (ctx.config.defaultService) return implicitSession(request, reply, url);
          throw clearingCookie(err);
        }
      })();
    };

    app.all('/*', (request, reply) => {
      const url = request.raw.url ?? '/';
      refuseOwnPath(request.method, url);
      checkProxyPath(url);
      const headers = request.headers;
      if (headers[SESSION_HEADER] !== undefined) return forwardTo(ctx, request, reply, sessionIdOf(headers, SESSION_HEADER)!, url);
      const cookie = cookieValue(typeof headers.cookie === 'string' ? headers.cookie : undefined, SESSION_COOKIE);
      return cookie !== undefined ? byCookie(request, reply, cookie, url) : implicitSession(request, reply, url);
    });
  };
}

/** WebSocket upgrades (fastify does not see them): same session rules as the HTTP routes. */
export function upgradeHandler(ctx: RouterContext) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const url = req.url ?? '/';
    // A WebSocket cannot start an implicit session; a dead cookie is cleared at least.
    const fromCookie = !PROXY_URL.test(url) && req.headers[SESSION_HEADER] === undefined;
    void (async () => {
      let id: string | undefined;
      let path: string;
      const m = PROXY_URL.exec(url);
      if (m) {
        id = checkSessionId(m[1]);
        path = instancePath(url, m[0].length);
      } else {
        if (url.startsWith(SESSIONS_PREFIX)) throw new RouterError('WARMPOOL_NOT_FOUND', 'no WebSocket route here');
        if (isOwnPath(url)) throw new RouterError('WARMPOOL_NOT_FOUND', `the router serves no WebSocket at ${pathOf(url).slice(0, 120)}`);
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
      if (socket.writable) socket.end(rawHttpError(fromCookie && isDeadSession(err) ? clearingCookie(err) : err));
      else socket.destroy();
    });
  };
}
