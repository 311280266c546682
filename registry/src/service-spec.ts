import { z } from 'zod';
import { containerOptionsShape, gpusPerInstance, headerName, secretHeaders } from './container-options.js';
import type { ServiceSpec } from './types.js';
import { warmSchema } from './warm-policy.js';

/**
 * Largest `warm` of one service. Each warm instance holds a slot key (~250 bytes in etcd) and
 * agents scan the slot numbers once per plan; 100,000 is 5x a 20,000-instance fleet, 25 MB
 * of slot keys, well inside etcd's default 2 GB quota.
 */
export const MAX_WARM = 100_000;
/** Largest `maxPerHost`: more instances than any one host can run. */
export const MAX_PER_HOST = 10_000;

/**
 * Why a service name is taken by infrastructure, or undefined. A service's instances are
 * registered in Consul under its name (`NAME.service.consul`), next to what is already
 * there: `consul` is Consul's own servers; `warmpool` and `warmpool-*` are Warmpool's own
 * (the routers are `warmpool-router`); `*-sidecar-proxy` is Consul Connect's default name
 * for a service's proxy. A service by such a name would mix with them in DNS.
 */
export function reservedServiceName(n: string): string | undefined {
  if (n === 'consul') return 'Consul registers its own servers as service "consul"';
  if (n === 'warmpool' || n.startsWith('warmpool-')) return 'names "warmpool" and "warmpool-*" are Warmpool\'s own (routers register as "warmpool-router")';
  if (n.endsWith('-sidecar-proxy')) return 'names "*-sidecar-proxy" are Consul Connect\'s proxies of services';
  return undefined;
}

const name = z.string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'lowercase letters, digits and dashes (DNS label), 1-63 characters')
  .superRefine((n, ctx) => {
    const why = reservedServiceName(n);
    if (why) ctx.addIssue({ code: 'custom', message: `"${n}" is reserved: ${why}` });
  });

// What Node's HTTP client (the sidecar's) sends as a path: U+0021..U+00FF; anything else makes
// every probe throw, so the instance would only fail at its boot timeout.
const probePath = z.string().startsWith('/', 'must start with /').max(2048)
  .regex(/^[\u0021-\u00ff]*$/, 'no spaces, line breaks or control characters (percent-encode them)');

/** Env variables the agent sets in every app container: a service's own value would be replaced. */
const WARMPOOL_APP_ENV: Record<string, string> = {
  INSTANCE_ID: 'INSTANCE_ID is set by Warmpool (the instance id)',
  PORT: 'PORT is set by Warmpool from containerPort',
};
/**
 * Header names that carry credentials: a plain `headers` value is stored in the registry,
 * which every router reads, so these must come from `secretHeaders`.
 */
export const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key']);

/**
 * What is wrong with a warm-up request's plain `headers` next to its `secretHeaders`: a
 * credential header name among the plain ones (its value would sit in the registry), or a
 * name given in both. Issues are relative to the request (path `['headers', name]`). Used
 * by `warmpool apply`'s schema and again by the agent on specs read from the registry.
 */
export function warmupHeaderIssues(headers: Record<string, unknown> | undefined, secretHeaders: Record<string, unknown> | undefined): { path: string[]; message: string }[] {
  const secret = new Set(Object.keys(secretHeaders ?? {}).map((k) => k.toLowerCase()));
  const out: { path: string[]; message: string }[] = [];
  for (const k of Object.keys(headers ?? {})) {
    if (CREDENTIAL_HEADERS.has(k.toLowerCase())) {
      out.push({ path: ['headers', k], message: `${k} carries a credential: the registry is readable by every router; take it from a file with secretHeaders` });
    } else if (secret.has(k.toLowerCase())) {
      out.push({ path: ['headers', k], message: `${k} is set in secretHeaders too: a header comes from headers or from a secret file, not both` });
    }
  }
  return out;
}

/** One warm-up request the sidecar sends after readiness, before reporting ready. */
const warmupRequest = z.object({
  method: z.enum(['GET', 'POST', 'PUT']).default('POST'),
  path: probePath,
  /** A string is sent as is; anything else as JSON (content-type application/json). */
  body: z.union([z.string().max(65_536), z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
  headers: z.record(headerName, z.string().max(8192).regex(/^[^\r\n]*$/, 'no line breaks')).optional(),
  /** Header values the agent reads from files on its host (never stored in the registry). */
  secretHeaders: secretHeaders.optional(),
  timeoutSec: z.number().positive().max(3600).default(60),
  expectStatus: z.number().int().min(100).max(599).default(200),
}).strict().superRefine((w, ctx) => {
  for (const issue of warmupHeaderIssues(w.headers, w.secretHeaders)) ctx.addIssue({ code: 'custom', ...issue });
});

/** Schema of one service in a services file; defaults fill what a user leaves out. */
export const serviceSpecSchema = z.object({
  name,
  image: z.string().min(1, 'an image name is required'),
  containerPort: z.number().int().min(1).max(65535).default(8000),
  warm: warmSchema(MAX_WARM),
  maxPerHost: z.number().int().min(1).max(MAX_PER_HOST).default(16),
  bootTimeoutSec: z.number().positive().max(86_400).default(600),
  // Health of the app (issue 16): readiness until ready, then liveness; optional warm-up.
  readiness: z.object({
    path: probePath.default('/health'),
    expectStatus: z.number().int().min(100).max(599).default(200),
    intervalMs: z.number().int().min(50).max(60_000).default(1000),
    /** No default: specs stored before it existed keep their hash; the sidecar uses 2000. */
    timeoutMs: z.number().int().min(10).max(600_000).optional(),
    failureThreshold: z.number().int().min(1).max(100).default(3),
  }).strict().prefault({}),
  liveness: z.object({
    path: probePath.default('/health'),
    expectStatus: z.number().int().min(100).max(599).default(200),
    intervalMs: z.number().int().min(50).max(600_000).default(5000),
    timeoutMs: z.number().int().min(10).max(600_000).default(5000),
    failureThreshold: z.number().int().min(1).max(100).default(3),
  }).strict().optional(),
  warmup: z.array(warmupRequest).max(10, 'at most 10 warm-up requests').optional(),
  session: z.object({
    idleTimeoutSec: z.number().int().min(1).max(86_400).default(600),
    maxLifetimeSec: z.number().int().min(1).max(7 * 86_400).default(8 * 3600),
  }).strict().prefault({}),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.string()).default({}),
  resources: z.object({
    // 16 TiB: beyond any host; the engine takes bytes as an int64, so the bound also keeps it exact.
    memoryMb: z.number().int().min(0).max(16 * 1024 * 1024).default(0),
    cpus: z.number().min(0).max(1024).default(0),
    gpus: gpusPerInstance,
  }).strict().prefault({}),
  ...containerOptionsShape,
  // ---- images (docs/images.md) ----
  pullPolicy: z.enum(['IfNotPresent', 'Always', 'Never']).default('IfNotPresent'),
  pullTimeoutSec: z.number().positive().max(86_400).default(1800),
}).strict().refine((s) => s.session.idleTimeoutSec <= s.session.maxLifetimeSec, {
  message: 'session.idleTimeoutSec must not exceed session.maxLifetimeSec',
  path: ['session', 'idleTimeoutSec'],
}).superRefine((s, ctx) => {
  for (const [field, vars] of [['env', s.env], ['secretEnv', s.secretEnv]] as const) {
    for (const k of Object.keys(vars)) if (WARMPOOL_APP_ENV[k]) ctx.addIssue({ code: 'custom', message: WARMPOOL_APP_ENV[k], path: [field, k] });
  }
  for (const k of Object.keys(s.secretEnv)) {
    if (k in s.env) ctx.addIssue({ code: 'custom', message: `${k} is set in env too: a variable comes from env or from a secret file, not both`, path: ['secretEnv', k] });
  }
  const targets = new Set<string>();
  s.volumes.forEach((v, i) => {
    if (targets.has(v.target)) ctx.addIssue({ code: 'custom', message: `${v.target} is mounted twice`, path: ['volumes', i, 'target'] });
    targets.add(v.target);
  });
});

/**
 * The most a service's record may take in the registry (bytes of JSON). Every agent and
 * router keeps every record in memory, and etcd takes at most 1.5 MiB per request
 * (`--max-request-bytes`), so that one record always fits in a transaction with room to spare.
 */
export const MAX_SERVICE_RECORD_BYTES = 256 * 1024;

export const servicesFileSchema = z.object({
  services: z.array(serviceSpecSchema).min(1, 'at least one service'),
}).strict().superRefine((f, ctx) => {
  const seen = new Set<string>();
  f.services.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: 'custom', message: `duplicate service name "${s.name}"`, path: ['services', i, 'name'] });
    seen.add(s.name);
    const bytes = Buffer.byteLength(JSON.stringify(s));
    if (bytes > MAX_SERVICE_RECORD_BYTES) {
      ctx.addIssue({ code: 'custom', message: `the service's record would take ${(bytes / 1024).toFixed(0)} KiB in the registry, more than the ${MAX_SERVICE_RECORD_BYTES / 1024} KiB a service may take (large env values belong in secretEnv files or volumes)`, path: ['services', i] });
    }
  });
});

export interface SpecProblem { path: string; message: string }

function pathOf(p: PropertyKey[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : `${i ? '.' : ''}${String(x)}`)).join('') || '(root)';
}

/**
 * Zod's issues as problems, one bound per field: an integer field over its maximum is also
 * over the safe-integer bound zod adds (9007199254740991); only the tighter bound is said.
 */
function problemsOf(issues: readonly z.core.$ZodIssue[]): SpecProblem[] {
  const bound = (i: z.core.$ZodIssue): number => Number((i as { maximum?: unknown; minimum?: unknown })[i.code === 'too_big' ? 'maximum' : 'minimum']);
  const out: { issue: z.core.$ZodIssue; key: string | null }[] = [];
  for (const i of issues) {
    const key = i.code === 'too_big' || i.code === 'too_small' ? `${i.code} ${pathOf(i.path)}` : null;
    const at = key === null ? -1 : out.findIndex((o) => o.key === key);
    if (at < 0) { out.push({ issue: i, key }); continue; }
    const prev = out[at]!.issue;
    if (i.code === 'too_big' ? bound(i) < bound(prev) : bound(i) > bound(prev)) out[at] = { issue: i, key };
  }
  return out.map(({ issue: i }) => ({ path: pathOf(i.path), message: i.message }));
}

/** Validates a parsed services file; problems name the field path and the reason. */
export function parseServicesFile(input: unknown): { ok: true; services: ServiceSpec[] } | { ok: false; problems: SpecProblem[] } {
  // Top-level `x-` keys are extension fields, as in Compose files (a place for YAML anchors).
  if (input && typeof input === 'object' && !Array.isArray(input)) {
    input = Object.fromEntries(Object.entries(input).filter(([k]) => !k.startsWith('x-')));
  }
  const r = servicesFileSchema.safeParse(input);
  if (r.success) return { ok: true, services: r.data.services };
  return { ok: false, problems: problemsOf(r.error.issues) };
}

export function parseServiceSpec(input: unknown): { ok: true; spec: ServiceSpec } | { ok: false; problems: SpecProblem[] } {
  const r = serviceSpecSchema.safeParse(input);
  if (r.success) return { ok: true, spec: r.data };
  return { ok: false, problems: problemsOf(r.error.issues) };
}
