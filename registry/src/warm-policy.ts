import { z } from 'zod';
import type { ServiceSpec, WarmPolicy } from './types.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a local time "HH:MM" (00:00-23:59)');

function knownZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Largest pool a policy may ask for (the static `warm` number has its own bound, MAX_WARM). */
export const MAX_POLICY_INSTANCES = 100_000;

/**
 * Claims older than this are not kept in the registry (ended claims live on the tombstone
 * lease, at least half its default retention of 3600 s): a policy's window plus its
 * cool-down must fit, or the sizing would see fewer arrivals than happened.
 */
export const MAX_HISTORY_SEC = 1800;

const warmWindowSchema = z.object({
  days: z.array(z.enum(DAYS)).max(7).default([]),
  start: hhmm,
  end: hhmm,
  timezone: z.string().default('UTC').refine(knownZone, 'an IANA time zone, e.g. Europe/Paris or UTC'),
  min: z.number().int().min(0).max(MAX_POLICY_INSTANCES),
}).strict().refine((w) => w.start !== w.end, { message: 'start and end must differ', path: ['end'] });

/** `warm: { min, max, target, windowSec?, cooldownSec?, bootSec?, windows? }` (docs/pool-sizing.md). */
export const warmPolicySchema = z.object({
  min: z.number().int().min(0).max(MAX_POLICY_INSTANCES).default(0),
  max: z.number().int().min(0).max(MAX_POLICY_INSTANCES),
  target: z.number().gt(0, 'a probability between 0 and 1 (exclusive), e.g. 0.99').lt(1, 'a probability between 0 and 1 (exclusive), e.g. 0.99'),
  windowSec: z.number().int().min(10).max(MAX_HISTORY_SEC).default(300),
  cooldownSec: z.number().int().min(0).max(MAX_HISTORY_SEC).default(300),
  bootSec: z.number().positive('a boot time in seconds, e.g. 90').max(86_400).optional(),
  windows: z.array(warmWindowSchema).max(32).default([]),
}).strict().superRefine((p, ctx) => {
  // Runs even when other fields failed (all problems in one answer), so fields may be of any type.
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (num(p.min) && num(p.max) && p.min > p.max) ctx.addIssue({ code: 'custom', message: `min (${p.min}) must not exceed max (${p.max})`, path: ['min'] });
  if (Array.isArray(p.windows)) {
    p.windows.forEach((w, i) => {
      const wmin = (w as { min?: unknown } | null)?.min;
      if (num(wmin) && num(p.max) && wmin > p.max) ctx.addIssue({ code: 'custom', message: `window min (${wmin}) must not exceed max (${p.max})`, path: ['windows', i, 'min'] });
    });
  }
  if (num(p.windowSec) && num(p.cooldownSec) && p.windowSec + p.cooldownSec > MAX_HISTORY_SEC) {
    ctx.addIssue({ code: 'custom', message: `windowSec + cooldownSec must be at most ${MAX_HISTORY_SEC} s (claim history kept in the registry)`, path: ['cooldownSec'] });
  }
}, { when: (payload) => typeof payload.value === 'object' && payload.value !== null });

const checked = new WeakMap<object, WarmPolicy | null>();

/**
 * The policy of a service, or undefined for a static pool (`warm` as a number). A policy
 * written into the registry by hand that `warmpool apply` would refuse counts as `max: 0`
 * (no pool; waiting sessions still boot their own): a bad record never stops an agent.
 */
export function warmPolicyOf(spec: Pick<ServiceSpec, 'warm'>): WarmPolicy | undefined {
  if (typeof spec.warm === 'number') return undefined;
  if (typeof spec.warm !== 'object' || spec.warm === null) return INVALID_POLICY;
  let p = checked.get(spec.warm);
  if (p === undefined) {
    const r = warmPolicySchema.safeParse(spec.warm);
    p = r.success ? r.data : null;
    checked.set(spec.warm, p);
  }
  return p ?? INVALID_POLICY;
}

const INVALID_POLICY: WarmPolicy = { min: 0, max: 0, target: 0.5, windowSec: 300, cooldownSec: 0, windows: [] };

/**
 * `warm`: a number (static pool) or a policy object. Not a plain union: a union reports an
 * object with one bad field as "invalid input" for the whole field; this picks the schema
 * by the value's type, so problems name the exact field (warm.windows[0].days[0]).
 */
export const warmSchema = (maxWarm: number) => z.unknown().optional().transform((v, ctx): number | WarmPolicy => {
  const warmCount = z.number({
    error: (iss) => {
      if (iss.code !== 'invalid_type') return undefined;
      return iss.expected === 'int' ? 'a whole number of instances' : 'a number of instances (e.g. 3) or a policy object (e.g. { min: 0, max: 8, target: 0.99 })';
    },
  }).int().min(0).max(maxWarm);
  const r = typeof v === 'object' && v !== null ? warmPolicySchema.safeParse(v) : warmCount.safeParse(v === undefined ? 1 : v);
  if (r.success) return r.data;
  // As they are (code and bounds too), so the services file's problems keep one bound per field.
  for (const issue of r.error.issues) ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0]);
  return z.NEVER;
});
