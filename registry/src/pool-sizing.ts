import type { WarmPolicy, WarmWindow } from './types.js';

/**
 * The pool-sizing model (docs/pool-sizing.md), a pure function: arrivals, boot times and a
 * clock in, a pool size and its explanation out. Every agent, `warmpool status` and the
 * dashboard run it on the same registry contents, so they agree without a controller.
 *
 * Model: sessions arrive as a Poisson process of rate λ; an instance claimed now is replaced
 * by a boot of duration T, so the instances being replaced at any moment are the arrivals of
 * the last T (M/G/∞: Poisson with mean λT). A pool of k ready-or-booting instances has a
 * ready one for a new session when fewer than k sessions arrived during the last boot:
 * k = 1 + (the `target` quantile of Poisson(λT)).
 *
 * λ is the larger of the rates over the last 60 s and over the policy's window: a rise shows
 * within a minute, a lull counts only once the whole window is quiet. No arrival in the
 * window means λ = 0 and the pool falls to its minimum (scale to zero with `min: 0`).
 *
 * Cool-down and hysteresis: the size is the largest the model gave at any moment of the
 * last `cooldownSec` (now, a 10 s grid, and every arrival and boot measurement, the moments
 * it can rise): it grows at once and shrinks only once it has been too large for a whole
 * cool-down, so it cannot flap faster than that.
 */

/** Rate window that catches a rise quickly (s). */
export const SHORT_WINDOW_SEC = 60;
/** Grid the cool-down looks back on (ms); a fixed grid keeps agents' answers equal. */
export const SIZING_STEP_MS = 10_000;
/** Boot time assumed while no boot of the service has been measured and the policy gives no `bootSec` (ms). */
export const DEFAULT_BOOT_MS = 30_000;

export interface SizingInput {
  policy: WarmPolicy;
  /** When the service's sessions were requested (epoch ms, any order; see pool-view.ts arrivalsOf). */
  arrivals: readonly number[];
  /** Measured boot durations of recent instances (ms), pull + boot + warm-up where known. */
  bootsMs?: readonly number[];
  /**
   * The same with when each was measured (epoch ms): the size at a past moment of the
   * cool-down uses the boots known then, so a new measurement never rewrites the past.
   */
  boots?: readonly { at: number; ms: number }[];
  now: number;
  /** Also compute `next` (look-ahead: costs ~60 sizings; agents skip it). */
  explain?: boolean;
}

export interface SizingResult {
  /** Ready-or-booting instances to keep (before the fleet's capacity cap). */
  size: number;
  /** What the model gives for this very moment (before min, max and the cool-down). */
  modelSize: number;
  /** Arrivals per second behind it. */
  ratePerSec: number;
  /** Boot time behind it (ms) and whether it was measured. */
  bootMs: number;
  bootMeasured: boolean;
  /** The minimum in force now (policy min or an active time window's). */
  floor: number;
  /** Why the size is what it is, in words. */
  reason: string;
  /** When the size will change if no session arrives meanwhile, and to what (null: not within the look-ahead). */
  next: { at: number; size: number } | null;
  /**
   * The earliest moment the size may fall if no session arrives (epoch ms, at least
   * RECHECK_MIN_MS ahead): a moment of the cool-down (grid point, arrival or boot
   * measurement) leaves it, or an arrival leaves a rate window. null when the size is at the
   * minimum in force. Agents plan again then, so a cool-down's end takes effect when it ends,
   * not at the next resync. Cheap (no look-ahead).
   */
  recheckAt: number | null;
}

/** The soonest a recheck is asked for (ms): bounds the extra plans of a busy service. */
export const RECHECK_MIN_MS = 1000;

function countSince(sorted: readonly number[], from: number, to: number): number {
  // arrivals in (from, to]
  return firstAfter(sorted, to) - firstAfter(sorted, from);
}

/** Smallest k with P(N <= k) >= p for N ~ Poisson(mean); exact summation, bounded. */
export function poissonQuantile(mean: number, p: number): number {
  if (!(mean > 0)) return 0;
  // Work in logs: e^-mean underflows for mean > ~745.
  let logTerm = -mean;
  let cdf = Math.exp(logTerm);
  let k = 0;
  const limit = Math.ceil(mean + 20 * Math.sqrt(mean) + 50);
  while (cdf < p && k < limit) {
    k++;
    logTerm += Math.log(mean) - Math.log(k);
    cdf += Math.exp(logTerm);
  }
  return k;
}

function median(xs: readonly number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const DAY_INDEX: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Local weekday (0 = Sunday) and minute of the day of `t` in `timezone`. */
function localTime(t: number, timezone: string): { day: number; minute: number } {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: timezone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timezone, f);
  }
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(new Date(t))) {
    if (p.type === 'weekday') day = DAY_INDEX[p.value.toLowerCase().slice(0, 3)] ?? 0;
    else if (p.type === 'hour') hour = Number(p.value);
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return { day, minute: hour * 60 + minute };
}

const minutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether a time window is active at `t` (a window past midnight belongs to the day it starts). */
export function windowActive(w: WarmWindow, t: number): boolean {
  const { day, minute } = localTime(t, w.timezone || 'UTC');
  const start = minutes(w.start);
  const end = minutes(w.end);
  const onDay = (d: number): boolean => w.days.length === 0 || w.days.some((x) => DAY_INDEX[x] === d);
  if (start < end) return minute >= start && minute < end && onDay(day);
  // Past midnight: the evening part on its day, the morning part on the next day.
  return (minute >= start && onDay(day)) || (minute < end && onDay((day + 6) % 7));
}

/** The minimum in force at `t`: the policy's, or the largest of its active windows'. */
export function floorAt(policy: WarmPolicy, t: number): number {
  let floor = policy.min;
  for (const w of policy.windows) if (w.min > floor && windowActive(w, t)) floor = w.min;
  return Math.min(floor, policy.max);
}

interface Moment { model: number; size: number; rate: number }

/**
 * Boot samples in time order; the boot time at t is the median of the newest ones known at t.
 * `instants`: when the measurements came (the boot time can change only then).
 */
type BootAt = ((t: number) => number) & { instants?: readonly number[] };
const RECENT_BOOTS = 20;

function bootClock(input: SizingInput, fallbackMs: number): BootAt {
  const timed = [...(input.boots ?? [])].filter((b) => b.ms > 0).sort((a, b) => a.at - b.at);
  if (!timed.length) return () => fallbackMs;
  const medians = new Map<number, number>();
  const at: BootAt = (t) => {
    let end = timed.length;
    while (end > 0 && timed[end - 1]!.at > t) end--;
    // Before the first measurement: the boot time known now (never the 30 s default).
    if (end === 0) return fallbackMs;
    let m = medians.get(end);
    if (m === undefined) medians.set(end, (m = median(timed.slice(Math.max(0, end - RECENT_BOOTS), end).map((b) => b.ms))!));
    return m;
  };
  at.instants = timed.map((b) => b.at);
  return at;
}

/** Index of the first of `sorted` after `t`. */
function firstAfter(sorted: readonly number[], t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (sorted[m]! <= t) lo = m + 1; else hi = m; }
  return lo;
}

/** The session request rate behind the model at `t` (per second; see the module comment). */
function rateAt(policy: WarmPolicy, sorted: readonly number[], t: number): number {
  const windowMs = policy.windowSec * 1000;
  const shortMs = Math.min(SHORT_WINDOW_SEC * 1000, windowMs);
  return Math.max(countSince(sorted, t - shortMs, t) / (shortMs / 1000), countSince(sorted, t - windowMs, t) / policy.windowSec);
}

function sizeAt(policy: WarmPolicy, sorted: readonly number[], bootAt: BootAt, t: number): Moment {
  const bootMs = bootAt(t);
  const rate = rateAt(policy, sorted, t);
  const model = rate > 0 ? 1 + poissonQuantile((rate * bootMs) / 1000, policy.target) : 0;
  return { model, size: Math.min(policy.max, Math.max(floorAt(policy, t), model)), rate };
}

/**
 * The largest size over the cool-down ending at `t`: at `t`, at the grid points (time
 * windows' minimums), and at every moment the model can rise, an arrival (the rate steps up)
 * or a boot measurement (the boot time may grow). Without those, a rise between two grid
 * points was forgotten as soon as `now` moved past it. Cheap: per boot time, only the largest
 * rate at those moments meets the quantile.
 */
function heldSize(policy: WarmPolicy, sorted: readonly number[], bootAt: BootAt, t: number): number {
  let size = sizeAt(policy, sorted, bootAt, t).size;
  const from = t - policy.cooldownSec * 1000;
  for (let g = Math.floor(t / SIZING_STEP_MS) * SIZING_STEP_MS; g > from; g -= SIZING_STEP_MS) {
    if (g === t) continue;
    size = Math.max(size, sizeAt(policy, sorted, bootAt, g).size);
  }
  if (size >= policy.max) return size;
  const best = new Map<number, number>();
  const consider = (m: number): void => {
    const ms = bootAt(m);
    const r = rateAt(policy, sorted, m);
    if (r > (best.get(ms) ?? 0)) best.set(ms, r);
  };
  for (let i = firstAfter(sorted, from); i < sorted.length && sorted[i]! < t; i++) consider(sorted[i]!);
  const boots = bootAt.instants ?? [];
  for (let i = firstAfter(boots, from); i < boots.length && boots[i]! < t; i++) consider(boots[i]!);
  for (const [ms, r] of best) size = Math.max(size, Math.min(policy.max, 1 + poissonQuantile((r * ms) / 1000, policy.target)));
  return size;
}

/** See SizingResult.recheckAt. `sorted`: arrivals up to now, ascending. */
function recheckAt(policy: WarmPolicy, sorted: readonly number[], boots: readonly number[], now: number): number {
  const candidates: number[] = [];
  // The oldest moment of the cool-down's grid, its oldest arrival or its oldest boot
  // measurement leaves it (heldSize looks back at each of them).
  const cooldownMs = policy.cooldownSec * 1000;
  const from = now - cooldownMs;
  const oldest = Math.floor(from / SIZING_STEP_MS) * SIZING_STEP_MS + SIZING_STEP_MS;
  if (oldest <= now && oldest !== now) candidates.push(oldest + cooldownMs);
  for (const moments of [sorted, boots]) {
    const first = firstAfter(moments, from);
    if (first < moments.length && moments[first]! < now) candidates.push(moments[first]! + cooldownMs);
  }
  // The oldest arrival in each rate window leaves it (the size now may fall).
  const windowMs = policy.windowSec * 1000;
  for (const w of new Set([Math.min(SHORT_WINDOW_SEC * 1000, windowMs), windowMs])) {
    const first = firstAfter(sorted, now - w);
    if (first < sorted.length) candidates.push(sorted[first]! + w);
  }
  return Math.max(now + RECHECK_MIN_MS, candidates.length ? Math.min(...candidates) : Infinity);
}

/** Sizes a demand-driven pool now; see the module comment for the model. */
export function sizePool(input: SizingInput): SizingResult {
  const { policy, now } = input;
  const sorted = input.arrivals.filter((a) => a <= now).sort((a, b) => a - b);
  const all = [...(input.bootsMs ?? []), ...(input.boots ?? []).filter((b) => b.at <= now).slice(-RECENT_BOOTS).map((b) => b.ms)];
  const measured = median(all.filter((b) => b > 0));
  const bootMs = measured ?? (policy.bootSec !== undefined ? policy.bootSec * 1000 : DEFAULT_BOOT_MS);
  const bootAt: BootAt = input.boots?.length ? bootClock(input, bootMs) : () => bootMs;
  const here = sizeAt(policy, sorted, bootAt, now);
  const size = heldSize(policy, sorted, bootAt, now);
  const floor = floorAt(policy, now);

  let reason: string;
  if (size > here.size) reason = `holding ${size} for the cool-down (${policy.cooldownSec} s) after a higher demand`;
  else if (here.rate === 0) reason = `no session requested in the last ${policy.windowSec} s: at the minimum ${floor}`;
  else if (here.model > policy.max) reason = `capped at max ${policy.max} (the model asks for ${here.model})`;
  else if (here.model < floor) reason = `at the minimum ${floor} (the model asks for ${here.model})`;
  else reason = `${(policy.target * 100).toFixed(1)}% quantile of arrivals during one boot (${(here.rate * 60).toFixed(2)}/min x ${(bootMs / 1000).toFixed(1)} s) + 1`;

  const recheck = size > floor ? recheckAt(policy, sorted, bootAt.instants ?? [], now) : null;
  const recheckAtOrNull = recheck !== null && Number.isFinite(recheck) ? recheck : null;
  // Look ahead, assuming nobody arrives: when does the size change (cool-down ends, window edges)?
  let next: SizingResult['next'] = null;
  if (!input.explain) return { size, modelSize: here.model, ratePerSec: here.rate, bootMs, bootMeasured: measured !== undefined, floor, reason, next, recheckAt: recheckAtOrNull };
  const horizon = now + (policy.windowSec + policy.cooldownSec) * 1000 + SIZING_STEP_MS;
  for (let t = Math.floor(now / SIZING_STEP_MS) * SIZING_STEP_MS + SIZING_STEP_MS; t <= horizon; t += SIZING_STEP_MS) {
    const s = heldSize(policy, sorted, bootAt, t);
    if (s !== size) { next = { at: t, size: s }; break; }
  }
  return { size, modelSize: here.model, ratePerSec: here.rate, bootMs, bootMeasured: measured !== undefined, floor, reason, next, recheckAt: recheckAtOrNull };
}
