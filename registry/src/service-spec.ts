import { z } from 'zod';
import type { ServiceSpec } from './types.js';

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'lowercase letters, digits and dashes (DNS label), 1-63 characters');

/** Schema of one service in a services file; defaults fill what a user leaves out. */
export const serviceSpecSchema = z.object({
  name,
  image: z.string().min(1, 'an image name is required'),
  containerPort: z.number().int().min(1).max(65535).default(8000),
  warm: z.number().int().min(0).max(10_000).default(1),
  maxPerHost: z.number().int().min(1).max(10_000).default(16),
  bootTimeoutSec: z.number().positive().max(86_400).default(600),
  readiness: z.object({
    path: z.string().startsWith('/', 'must start with /').default('/health'),
    expectStatus: z.number().int().min(100).max(599).default(200),
    intervalMs: z.number().int().min(50).max(60_000).default(1000),
    failureThreshold: z.number().int().min(1).max(100).default(3),
  }).strict().prefault({}),
  session: z.object({
    idleTimeoutSec: z.number().int().min(1).max(86_400).default(600),
    maxLifetimeSec: z.number().int().min(1).max(7 * 86_400).default(8 * 3600),
  }).strict().prefault({}),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.string()).default({}),
  resources: z.object({
    memoryMb: z.number().int().min(0).default(0),
    cpus: z.number().min(0).max(1024).default(0),
  }).strict().prefault({}),
  // ---- images (docs/images.md) ----
  pullPolicy: z.enum(['IfNotPresent', 'Always', 'Never']).default('IfNotPresent'),
  pullTimeoutSec: z.number().positive().max(86_400).default(1800),
}).strict().refine((s) => s.session.idleTimeoutSec <= s.session.maxLifetimeSec, {
  message: 'session.idleTimeoutSec must not exceed session.maxLifetimeSec',
  path: ['session', 'idleTimeoutSec'],
});

export const servicesFileSchema = z.object({
  services: z.array(serviceSpecSchema).min(1, 'at least one service'),
}).strict().superRefine((f, ctx) => {
  const seen = new Set<string>();
  f.services.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: 'custom', message: `duplicate service name "${s.name}"`, path: ['services', i, 'name'] });
    seen.add(s.name);
  });
});

export interface SpecProblem { path: string; message: string }

function pathOf(p: PropertyKey[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : `${i ? '.' : ''}${String(x)}`)).join('') || '(root)';
}

/** Validates a parsed services file; problems name the field path and the reason. */
export function parseServicesFile(input: unknown): { ok: true; services: ServiceSpec[] } | { ok: false; problems: SpecProblem[] } {
  const r = servicesFileSchema.safeParse(input);
  if (r.success) return { ok: true, services: r.data.services };
  return { ok: false, problems: r.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message })) };
}

export function parseServiceSpec(input: unknown): { ok: true; spec: ServiceSpec } | { ok: false; problems: SpecProblem[] } {
  const r = serviceSpecSchema.safeParse(input);
  if (r.success) return { ok: true, spec: r.data };
  return { ok: false, problems: r.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message })) };
}
