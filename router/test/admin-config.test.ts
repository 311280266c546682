// Admin endpoints behind a token, health/readiness, metrics, config parsing, error mapping.
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { MemoryKvStore } from '@warmpool/registry';
import { harness } from './fixtures.js';
import { httpErrorOf, parseRouterConfig, routerConfigFromEnv, RouterError, ROUTER_ERRORS, startRouter } from '../src/index.js';

const TOKEN = 'admin-token-0123456789';

t.test('/v1/services* need the bearer token when one is configured', async (t) => {
  const h = await harness({ ready: 2, router: { config: { adminToken: TOKEN } } });
  t.teardown(() => h.close());
  for (const auth of [undefined, 'Bearer wrong-token-000000000', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`]) {
    const res = await h.app.inject({ url: '/v1/services', headers: auth ? { authorization: auth } : {} });
    t.equal(res.statusCode, 401, `${auth ?? 'no header'}: 401`);
    t.equal(res.json().error.code, 'WARMPOOL_UNAUTHORIZED');
    t.match(res.headers['www-authenticate'], /Bearer/);
  }
  const ok = await h.app.inject({ url: '/v1/services', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(ok.statusCode, 200);
  t.match(ok.json(), { services: [{ name: 'chatbot', readyUnclaimed: 2, instances: { ready: 2 }, sessions: 0 }] });
  const inst = await h.app.inject({ url: '/v1/services/chatbot/instances', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(inst.statusCode, 200);
  t.equal(inst.json().instances.length, 2);
  const unknown = await h.app.inject({ url: '/v1/services/nope/instances', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(unknown.statusCode, 404);
  t.equal(unknown.json().error.code, 'WARMPOOL_UNKNOWN_SERVICE');
  const noAuth = await h.app.inject({ url: '/v1/services/chatbot/instances' });
  t.equal(noAuth.statusCode, 401);
  // The session API is not behind the admin token.
  const s = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  t.equal(s.statusCode, 201);
});

t.test('without a token the admin endpoints are open; healthz, readyz, metrics', async (t) => {
  const h = await harness({ ready: 1 });
  t.teardown(() => h.close());
  t.equal((await h.app.inject({ url: '/v1/services' })).statusCode, 200);
  t.same((await h.app.inject({ url: '/healthz' })).json(), { status: 'ok' });
  const ready = await h.app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.equal(ready.json().registry, 'live');
  await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  const m = await h.app.inject({ url: '/metrics' });
  t.match(m.headers['content-type'], /text\/plain/);
  for (const name of [
    'warmpool_router_claim_duration_seconds', 'warmpool_router_waiting_requests', 'warmpool_router_sessions_waited_for_boot_total',
    'warmpool_router_proxy_errors_total', 'warmpool_router_active_sessions',
  ]) t.match(m.body, new RegExp(`# TYPE ${name} `), name);
  t.match(m.body, /warmpool_router_active_sessions\{service="chatbot"\} 1/);
  t.match(m.body, /warmpool_router_claim_duration_seconds_count\{service="chatbot",outcome="claimed"\} 1/);
});

t.test('readyz is 503 until the registry cache is live', async (t) => {
  const { MemoryKvStore, Registry } = await import('@warmpool/registry');
  const { buildRouter } = await import('../src/index.js');
  const store = new MemoryKvStore();
  // A store whose list never answers: the cache never goes live.
  store.list = () => new Promise(() => undefined);
  const registry = new Registry(store);
  const app = buildRouter({ registry });
  t.teardown(async () => { await app.close(); await store.close(); });
  const res = await app.inject({ url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'but the process is up');
});

t.test('readyz stays ready through a periodic re-list (the copy stays valid while it is refreshed)', async (t) => {
  const h = await harness({ ready: 1 });
  t.teardown(() => h.close());
  const cache = await h.registry.cache();
  const list = h.store.list.bind(h.store);
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  h.store.list = async (prefix: string) => { await held; return list(prefix); };
  const resync = cache.resync();
  await new Promise((r) => setImmediate(r));
  t.equal(cache.state, 'syncing', 'the cache is re-listing');
  const during = await h.app.inject({ url: '/readyz' });
  t.same([during.statusCode, during.json()], [200, { status: 'ready', registry: 'live' }], 'still ready meanwhile');
  release();
  await resync;
  t.equal(cache.state, 'live');
  t.equal((await h.app.inject({ url: '/readyz?strict=true' })).statusCode, 200, 'strict: ready too');
  const bad = await h.app.inject({ url: '/readyz?strict=yes-please' });
  t.equal(bad.statusCode, 400, 'a malformed strict flag is a 400');
  t.match(bad.json(), { error: { message: /strict/ } });
  t.match((await h.app.inject({ url: '/metrics' })).body, /^warmpool_router_registry_connected 1$/m, 'connected');
});

t.test('config: defaults, validation problems by path, environment', async (t) => {
  const d = parseRouterConfig({});
  t.ok(d.ok);
  if (d.ok) {
    t.equal(d.config.listen.port, 8080);
    t.equal(d.config.registry.prefix, '/warmpool/');
    t.equal(d.config.wait.maxSec, 300);
    t.equal(d.config.heapGrowingPercent, 50);
    t.equal(d.config.listen.backlog, 4096);
  }
  const bad = parseRouterConfig({ listen: { port: 70000 }, adminToken: 'short', wait: { defaultSec: 10, maxSec: 5 }, registry: { endpoints: ['ftp://x'] }, extra: 1 });
  t.notOk(bad.ok);
  if (!bad.ok) {
    const paths = bad.problems.map((p) => p.path);
    for (const p of ['listen.port', 'adminToken', 'registry.endpoints.0', '(root)']) t.ok(paths.includes(p), `problem at ${p}`);
  }
  const fromEnv = parseRouterConfig(routerConfigFromEnv({
    WARMPOOL_ETCD: 'http://127.0.0.1:1,http://127.0.0.1:2', WARMPOOL_ROUTER_PORT: '9000', WARMPOOL_DEFAULT_SERVICE: 'chatbot',
    WARMPOOL_MAX_WAIT_SEC: '60', WARMPOOL_PREFIX: '/wp/', WARMPOOL_ROUTER_HEAP_GROWING_PERCENT: '0', WARMPOOL_ROUTER_BACKLOG: '1000',
  }));
  t.ok(fromEnv.ok);
  if (fromEnv.ok) {
    t.same(fromEnv.config.registry.endpoints, ['http://127.0.0.1:1', 'http://127.0.0.1:2']);
    t.equal(fromEnv.config.listen.port, 9000);
    t.equal(fromEnv.config.defaultService, 'chatbot');
    t.equal(fromEnv.config.registry.prefix, '/wp/');
    t.equal(fromEnv.config.heapGrowingPercent, 0, '0: V8 keeps its own factor');
    t.equal(fromEnv.config.listen.backlog, 1000);
  }
  for (const v of ['0', '70000', 'many']) {
    const r = parseRouterConfig(routerConfigFromEnv({ WARMPOOL_ROUTER_BACKLOG: v }));
    t.match(r, { ok: false, problems: [{ path: 'listen.backlog' }] }, `listen.backlog ${v} is refused, naming the field`);
  }
  const badEnv = parseRouterConfig(routerConfigFromEnv({ WARMPOOL_ROUTER_PORT: 'eighty' }));
  t.notOk(badEnv.ok, 'a port that is not a number is reported');
  for (const v of ['-1', '301', '12.5', 'lots']) {
    const r = parseRouterConfig(routerConfigFromEnv({ WARMPOOL_ROUTER_HEAP_GROWING_PERCENT: v }));
    t.match(r, { ok: false, problems: [{ path: 'heapGrowingPercent' }] }, `heapGrowingPercent ${v} is refused, naming the field`);
  }
});

t.test('the router listens with its configured backlog (the Send-Q that ss shows for a listening socket)', async (t) => {
  const router = await startRouter({ kvStore: new MemoryKvStore(), config: { listen: { host: '127.0.0.1', port: 0, backlog: 1234 }, logLevel: 'warn' } });
  t.teardown(() => router.close());
  const out = execFileSync('ss', ['-ltnH', `sport = :${router.port}`], { encoding: 'utf8' });
  t.match(out, /^LISTEN\s+\d+\s+1234\s/m, `listen(2) got 1234: ${out.trim()}`);
});

t.test('errors map to HTTP in one place, with stable codes', async (t) => {
  for (const [code, { status }] of Object.entries(ROUTER_ERRORS)) {
    const h = httpErrorOf(new RouterError(code as keyof typeof ROUTER_ERRORS, 'm'));
    t.equal(h.status, status, code);
    t.equal(h.body.error.code, code);
  }
  t.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })).status, 502);
  t.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'ETIMEDOUT' })).status, 504);
  t.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'HPE_HEADER_OVERFLOW' })).status, 431);
  t.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'HPE_INVALID_CHUNK_SIZE' })).status, 400);
  const internal = httpErrorOf(new Error('secret detail'));
  t.equal(internal.status, 500);
  t.equal(internal.body.error.message, 'internal error', 'internal details never leak');
  t.equal(httpErrorOf(new RouterError('WARMPOOL_NO_READY_INSTANCE', 'x')).headers['retry-after'], '1', '503 always has Retry-After');
});
