import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { computeStatus, typicalStages, type InstanceStages, type RegistryCache } from '@warmpool/registry';
import { RouterError } from './errors.js';
import type { RouterContext } from './context.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import { retryAfterSec } from './boot-eta.js';
import type { PoolMonitor, PoolPoint } from './pool-monitor.js';

const require = createRequire(import.meta.url);
/**
 * One file of the charting library (uPlot, MIT), served by the router itself: no CDN. From
 * the uplot package in a checkout; from `uplot/` beside the bundle in the installed warmpool
 * package (deploy/package/build.sh copies it there). Read at the first request, so a router
 * that cannot find it still serves everything else (the page then draws no plot).
 */
const uplotFiles = new Map<string, string | null>();
function uplotFile(name: 'uPlot.iife.min.js' | 'uPlot.min.css'): string | null {
  if (!uplotFiles.has(name)) {
    const candidates = [
      (): string => require.resolve(`uplot/dist/${name}`),
      (): string => fileURLToPath(new URL(`./uplot/${name}`, import.meta.url)),
    ];
    let text: string | null = null;
    for (const find of candidates) {
      try { text = readFileSync(find(), 'utf8'); break; } catch { /* the next place */ }
    }
    uplotFiles.set(name, text);
  }
  return uplotFiles.get(name) ?? null;
}

/** What the dashboard shows; session ids are shortened (a full id is a credential). */
export interface DashboardState {
  at: number;
  status: ReturnType<typeof computeStatus>;
  instances: { id: string; service: string; host: string; state: string; claimed: boolean; ageMs: number; bootMs: number | null; stages: InstanceStages | null; pullPercent?: number | null }[];
  sessions: { id: string; service: string; instance: string; host: string; ageMs: number; expiresInMs: number }[];
  /** Claims seen in the last minute (from the registry watch: all routers' claims). */
  claimsPerMin: number;
  /** The plot's newest point per service (the page appends it to the hour it loaded). */
  points: Record<string, PoolPoint>;
  /** Per service with sessions waiting: seconds until the first waiter's boot is expected to end. */
  etaSec: Record<string, number>;
  /** Per service in etaSec: whether the ETA rests on measured starts (else on the boot timeout, an upper bound). */
  etaMeasured: Record<string, boolean>;
}

export function dashboardState(cache: RegistryCache, pools: PoolMonitor, now: number): DashboardState {
  const status = computeStatus(cache, now);
  const etaSec: Record<string, number> = {};
  const etaMeasured: Record<string, boolean> = {};
  for (const s of status.services) {
    if (s.waiting <= 0) continue;
    const instances = cache.instancesOf(s.name);
    etaSec[s.name] = retryAfterSec(instances, cache.services.get(s.name)?.value, now, 0);
    etaMeasured[s.name] = typicalStages(instances).startMs !== null;
  }
  const instances = [...cache.instances.values()].map(({ value: i }) => ({
    id: i.id, service: i.service, host: i.host, state: cache.claims.has(i.id) && i.state === 'ready' ? 'claimed' : i.state,
    claimed: cache.claims.has(i.id), ageMs: now - i.createdAt, bootMs: i.bootMs, stages: i.stages ?? null,
    ...(i.state === 'pulling' ? { pullPercent: i.pull?.percent ?? null } : {}),
  })).sort((a, b) => (a.service + a.host + a.id < b.service + b.host + b.id ? -1 : 1));
  const sessions = [...cache.sessions.values()].map(({ value: s }) => ({
    id: `${s.id.slice(0, 6)}…`, service: s.service, instance: s.instanceId, host: s.host, ageMs: now - s.createdAt, expiresInMs: s.expiresAt - now,
  }));
  return { at: now, status, instances, sessions, claimsPerMin: pools.claimsPerMin(), points: Object.fromEntries(pools.current()), etaSec, etaMeasured };
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * GET /dashboard (a page), GET /v1/dashboard/state (JSON) and GET /v1/dashboard/events (SSE:
 * a state snapshot on every registry change, at most every 250 ms). With an admin token
 * configured, the data endpoints need it (Authorization: Bearer, or ?token= for
 * EventSource, which cannot send headers).
 */
export function dashboardRoutes(ctx: RouterContext, opts: { now?: () => number } = {}) {
  const now = opts.now ?? Date.now;
  return async (app: FastifyInstance): Promise<void> => {
    const streams = new Set<() => void>();
    app.addHook('onClose', async () => { for (const end of [...streams]) end(); });
    const attach = (cache: RegistryCache): void => ctx.pools.attach(cache);

    const authorize = (request: FastifyRequest): void => {
      const token = ctx.config.adminToken;
      if (!token) return;
      const h = request.headers.authorization;
      const q = (request.query as { token?: unknown }).token;
      const given = typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7).trim() : typeof q === 'string' ? q : undefined;
      if (!given || !sameSecret(given, token)) {
        throw new RouterError('WARMPOOL_UNAUTHORIZED', 'a valid bearer token is required', { headers: { 'www-authenticate': 'Bearer realm="warmpool"' } });
      }
    };

    // The page carries the current state, so its first paint is the fleet, not dashes
    // waiting for the event stream (only when the data needs no token or the right one).
    app.get('/dashboard', async (request, reply: FastifyReply) => {
      reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store');
      let initial = 'null';
      try {
        authorize(request);
        // Bounded: a registry that is not listed yet must not hold the page back.
        const cache = await Promise.race([ctx.directory.cache(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('not listed yet')), 1_000).unref())]);
        attach(cache);
        initial = JSON.stringify(dashboardState(cache, ctx.pools, now())).replace(/</g, '\\u003c');
      } catch { /* no token (or the registry not listed yet): the page fills from the stream */ }
      return DASHBOARD_HTML.replace('__INITIAL__', () => initial);
    });

    app.get('/v1/dashboard/state', async (request) => {
      authorize(request);
      const cache = await ctx.directory.cache();
      attach(cache);
      return dashboardState(cache, ctx.pools, now());
    });

    app.get('/v1/dashboard/history', async (request) => {
      authorize(request);
      attach(await ctx.directory.cache());
      return { stepMs: 5_000, services: ctx.pools.historyOf() };
    });

    const serveUplot = (name: 'uPlot.iife.min.js' | 'uPlot.min.css', type: string) => async (_request: FastifyRequest, reply: FastifyReply) => {
      const text = uplotFile(name);
      if (text === null) throw new RouterError('WARMPOOL_NOT_FOUND', `the charting library (${name}) is not installed with this router`);
      reply.header('content-type', `${type}; charset=utf-8`).header('cache-control', 'public, max-age=86400');
      return text;
    };
    app.get('/dashboard/uplot.min.js', serveUplot('uPlot.iife.min.js', 'text/javascript'));
    app.get('/dashboard/uplot.min.css', serveUplot('uPlot.min.css', 'text/css'));

    app.get('/v1/dashboard/events', async (request, reply) => {
      authorize(request);
      const cache = await ctx.directory.cache();
      attach(cache);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      const send = (): void => { res.write(`data: ${JSON.stringify(dashboardState(cache, ctx.pools, now()))}\n\n`); };
      let pending: NodeJS.Timeout | undefined;
      const onChange = (): void => {
        if (pending) return;
        pending = setTimeout(() => { pending = undefined; send(); }, 250);
      };
      // Boot progress moves without registry writes: refresh every few seconds as well.
      const tick = setInterval(send, 3_000);
      cache.on('change', onChange);
      const stop = (): void => {
        streams.delete(end);
        cache.off('change', onChange);
        clearInterval(tick);
        if (pending) clearTimeout(pending);
      };
      const end = (): void => { stop(); res.end(); };
      streams.add(end);
      res.on('close', stop);
      send();
    });
  };
}
