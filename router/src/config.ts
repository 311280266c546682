import { z } from 'zod';
import { DEFAULT_PREFIX } from '@warmpool/registry';

const serviceName = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a service name (DNS label)');

/**
 * The router's configuration. Every field has a default except the registry endpoints;
 * `warmpool router` fills it from flags and WARMPOOL_* environment variables (see README).
 */
export const routerConfigSchema = z.object({
  registry: z.object({
    endpoints: z.array(z.url({ protocol: /^https?$/ })).min(1, 'at least one etcd endpoint').default(['http://127.0.0.1:2379']),
    prefix: z.string().regex(/^\/(.*\/)?$/, 'must start and end with "/"').default(DEFAULT_PREFIX),
  }).strict().prefault({}),
  listen: z.object({
    host: z.string().min(1).default('0.0.0.0'),
    port: z.number().int().min(0).max(65535).default(8080),
    /**
     * Connections the kernel queues for the router before it accepts them (listen(2)'s
     * backlog, capped by net.core.somaxconn). Node's own 511 overflows when thousands of
     * clients connect at once (a router restart, a burst of new streams): each dropped SYN
     * costs its client a retransmission, 1 s, then 3 s, 7 s (doubling, RFC 6298).
     */
    backlog: z.number().int().min(1).max(65535).default(4096),
  }).strict().prefault({}),
  /** Service claimed implicitly for `ANY /{path}` requests that carry no session. */
  defaultService: serviceName.optional(),
  /** Bearer token for /v1/services*; open when unset. */
  adminToken: z.string().min(16, 'at least 16 characters').optional(),
  wait: z.object({
    /** Wait for a booting instance when `?wait=` is not given. */
    defaultSec: z.number().min(0).max(3600).default(30),
    /** Upper bound of `?wait=`. */
    maxSec: z.number().min(0).max(3600).default(300),
  }).strict().prefault({}),
  limits: z.object({
    /** Proxied request bodies. */
    maxBodyBytes: z.number().int().min(0).default(32 * 1024 * 1024),
    /** Bodies of the router's own JSON endpoints. */
    maxJsonBytes: z.number().int().min(64).default(16 * 1024),
    /** All request headers together (Node's maxHeaderSize). */
    maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
    /** Time a client has to send its complete request headers. */
    headersTimeoutMs: z.number().int().min(100).default(30_000),
  }).strict().prefault({}),
  proxy: z.object({
    /** An upstream socket idle this long ends the request (504 before the response, abort after). */
    idleTimeoutMs: z.number().int().min(100).default(300_000),
    /** Idle kept-alive connections to an instance are closed after this long. */
    keepAliveTimeoutMs: z.number().int().min(100).default(60_000),
    /**
     * Responses with a Content-Length up to this size are read whole and written to the
     * client in one piece (cheaper per request); longer ones and those without a length
     * (SSE, chunked) always stream. 0 streams everything.
     */
    bufferResponseBytes: z.number().int().min(0).max(1024 * 1024).default(32 * 1024),
  }).strict().prefault({}),
  /**
   * Router processes sharing the listen port (node:cluster); `auto` = one per CPU. Each is
   * a full router; the first process only supervises them.
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default(1),
  /**
   * How far V8 lets the heap grow past what survived its last full collection before it
   * collects again, in percent (V8's --heap-growing-percent; 0: V8's own factor, up to 4x).
   * A router holds a copy of the registry and replaces records all day, so with V8's own
   * factor most of its heap is garbage waiting: at 20,000 instances 70 MB live, 236 MB heap,
   * 340 MB RSS; with 50, 115 MB heap and 186 MB RSS for about 1% of a core more at idle
   * (docs/operations.md, fleet-scale).
   */
  heapGrowingPercent: z.number().int().min(0).max(300).default(50),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
}).strict().refine((c) => c.wait.defaultSec <= c.wait.maxSec, {
  message: 'wait.defaultSec must not exceed wait.maxSec',
  path: ['wait', 'defaultSec'],
});

export type RouterConfig = z.infer<typeof routerConfigSchema>;
export type RouterConfigInput = z.input<typeof routerConfigSchema>;

export interface ConfigProblem { path: string; message: string }

export function parseRouterConfig(input: unknown): { ok: true; config: RouterConfig } | { ok: false; problems: ConfigProblem[] } {
  const r = routerConfigSchema.safeParse(input);
  if (r.success) return { ok: true, config: r.data };
  return { ok: false, problems: r.error.issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message })) };
}

/** Config with defaults for tests and embedding; throws on invalid input. */
export function routerConfig(input: RouterConfigInput = {}): RouterConfig {
  const r = parseRouterConfig(input);
  if (!r.ok) throw new Error(`invalid router config: ${r.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return r.config;
}

/**
 * The WARMPOOL_* environment variables the router reads, as config input (flags given to
 * `warmpool router` override them). Numbers that do not parse are kept as strings so the
 * schema reports them.
 */
export function routerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): RouterConfigInput {
  const num = (v: string | undefined): number | undefined => (v === undefined || v === '' ? undefined : Number(v));
  const out: Record<string, unknown> = {};
  const registry: Record<string, unknown> = {};
  // WARMPOOL_ETCD, as every warmpool command reads it (WARMPOOL_ETCD_ENDPOINTS: older name, still read).
  const etcd = env.WARMPOOL_ETCD ?? env.WARMPOOL_ETCD_ENDPOINTS;
  if (etcd) registry.endpoints = etcd.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.WARMPOOL_PREFIX) registry.prefix = env.WARMPOOL_PREFIX;
  out.registry = registry;
  const listen: Record<string, unknown> = {};
  if (env.WARMPOOL_ROUTER_HOST) listen.host = env.WARMPOOL_ROUTER_HOST;
  if (env.WARMPOOL_ROUTER_PORT) listen.port = num(env.WARMPOOL_ROUTER_PORT);
  if (env.WARMPOOL_ROUTER_BACKLOG) listen.backlog = num(env.WARMPOOL_ROUTER_BACKLOG);
  out.listen = listen;
  if (env.WARMPOOL_DEFAULT_SERVICE) out.defaultService = env.WARMPOOL_DEFAULT_SERVICE;
  if (env.WARMPOOL_ADMIN_TOKEN) out.adminToken = env.WARMPOOL_ADMIN_TOKEN;
  const wait: Record<string, unknown> = {};
  if (env.WARMPOOL_DEFAULT_WAIT_SEC) wait.defaultSec = num(env.WARMPOOL_DEFAULT_WAIT_SEC);
  if (env.WARMPOOL_MAX_WAIT_SEC) wait.maxSec = num(env.WARMPOOL_MAX_WAIT_SEC);
  out.wait = wait;
  if (env.WARMPOOL_ROUTER_WORKERS) out.workers = env.WARMPOOL_ROUTER_WORKERS === 'auto' ? 'auto' : num(env.WARMPOOL_ROUTER_WORKERS);
  if (env.WARMPOOL_ROUTER_HEAP_GROWING_PERCENT) out.heapGrowingPercent = num(env.WARMPOOL_ROUTER_HEAP_GROWING_PERCENT);
  if (env.WARMPOOL_LOG_LEVEL) out.logLevel = env.WARMPOOL_LOG_LEVEL;
  return out as RouterConfigInput;
}

/** Where a router listening on host:port is reached from this machine. */
export function localUrl(listenHost: string, port: number): string {
  const host = listenHost === '0.0.0.0' || listenHost === '::' ? '127.0.0.1' : listenHost;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
