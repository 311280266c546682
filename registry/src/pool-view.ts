import type { RegistryCache } from './cache.js';
import type { InstanceRecord, ServiceSpec } from './types.js';
import { sizePool, type SizingResult } from './pool-sizing.js';
import { warmPolicyOf } from './warm-policy.js';
import { isStarting } from './instance-stages.js';

/**
 * How many warm slots a service has now, derived from registry contents only, so every
 * agent (and `warmpool status`) computes the same number: the pool size (the static `warm`
 * or the demand-driven policy's) plus every session waiting in a router's queue, capped by
 * what the fleet can still hold. See docs/pool-sizing.md.
 */
export interface PoolView {
  service: string;
  /** True for `warm` as a number. */
  static: boolean;
  /** Pool size: the static `warm`, or the policy's size. */
  size: number;
  /** Sessions waiting in routers' queues (fleet-wide). */
  waiting: number;
  /** Instances of this service the fleet could still hold on top of its unclaimed ones. */
  room: number;
  /** Warm slots: min(size + waiting, unclaimed + room). */
  slots: number;
  /** The sizing behind a policy (undefined for a static pool). */
  sizing?: SizingResult;
}

type CacheView = Pick<RegistryCache, 'services' | 'hosts' | 'drains' | 'instances' | 'claims' | 'tombstones' | 'demand'>;

/** Waiting requests of one router counted as arrivals, at most (see arrivalsOf). */
const MAX_WAITERS_COUNTED = 1_000;

/**
 * An instance's boot time: its timed stages summed when its agent records them, else bootMs;
 * null until the instance was ready (a starting instance's stages hold only what it has done
 * so far: counted, they would pull the median down while it starts and up once it is ready).
 */
export function bootDurationMs(i: InstanceRecord): number | null {
  if (i.readyAt === null || i.readyAt === undefined) return null;
  const stages = (i as { stages?: Partial<Record<'pullMs' | 'createMs' | 'bootMs' | 'warmupMs', number | null>> }).stages;
  if (stages) {
    const sum = (stages.pullMs ?? 0) + (stages.createMs ?? 0) + (stages.bootMs ?? 0) + (stages.warmupMs ?? 0);
    if (sum > 0) return sum;
  }
  return typeof i.bootMs === 'number' && i.bootMs > 0 ? i.bootMs : null;
}

/**
 * When the service's sessions were asked for (epoch ms), as far as the registry knows: each
 * session's request time (its claim time less the time its request waited: claims, ended
 * claims, tombstones), and the requests waiting in routers' queues now (per router, the
 * oldest at `oldestSince`, the others at the record's time, when the newest had joined).
 * Demand is the request, not the claim: a waiting request counts from the moment it is made,
 * so the first requests of an empty pool raise its size at once, not a boot later when they
 * are served. A claim and its router's count go down in one transaction (docs/pool-sizing.md),
 * so no request counts twice.
 */
export function arrivalsOf(cache: Pick<CacheView, 'claims' | 'tombstones' | 'demand'>, service: string): number[] {
  const seen = new Set<string>();
  const out: number[] = [];
  for (const { value: c } of cache.claims.values()) {
    if (c.service !== service || seen.has(c.sessionId)) continue;
    seen.add(c.sessionId);
    out.push(c.claimedAt - (c.waitedMs ?? 0));
  }
  for (const { value: t } of cache.tombstones.values()) {
    if (t.service !== service || t.claimedAt === undefined || seen.has(t.sessionId)) continue;
    seen.add(t.sessionId);
    out.push(t.claimedAt - (t.waitedMs ?? 0));
  }
  for (const { value: d } of cache.demand.values()) {
    if (d.service !== service || !(d.waiting > 0)) continue;
    out.push(d.oldestSince);
    // Bounded: a record written by hand may say anything; past this many, the rate
    // already asks for more than any pool's max.
    const n = Math.min(d.waiting, MAX_WAITERS_COUNTED);
    for (let i = 1; i < n; i++) out.push(Math.max(d.oldestSince, d.at));
  }
  return out;
}

/**
 * The boot history, `{ at, ms }` ascending by `at` (epoch ms; ms: pull + create + boot +
 * warm-up where timed): the boots of the instances the service's sessions claimed (claims,
 * ended claims and tombstones keep the claimed instance's boot time), each dated when its
 * claim was made, the moment it entered the history. While that history has none (no session
 * within it), the boots of the service's current instances, dated when each was ready.
 *
 * Why not both: a sample must not leave the history by the pool's own doing. An unclaimed
 * instance's record goes when the pool retires it; had its boot counted, retiring the pool's
 * fast boots raised the median boot, and with it the size, right after the size fell (a flap
 * a CI run caught: 6 -> 4 -> 3 -> 4 with no new session). Sessions' records stay for the
 * history's span (30-60 min) whatever the pool does. And dated at the claim, a sample never
 * rewrites a past moment of the cool-down.
 */
export function bootHistoryOf(cache: Pick<CacheView, 'claims' | 'tombstones'>, instances: readonly InstanceRecord[], service: string): { at: number; ms: number }[] {
  const samples: { at: number; ms: number }[] = [];
  const seen = new Set<string>();
  for (const { value: c } of cache.claims.values()) {
    if (c.service !== service || !(c.bootMs! > 0) || seen.has(c.instanceId)) continue;
    seen.add(c.instanceId);
    samples.push({ at: c.claimedAt, ms: c.bootMs! });
  }
  for (const { value: t } of cache.tombstones.values()) {
    if (t.service !== service || !(t.bootMs! > 0) || seen.has(t.instanceId)) continue;
    seen.add(t.instanceId);
    samples.push({ at: t.claimedAt ?? t.endedAt, ms: t.bootMs! });
  }
  if (!samples.length) {
    for (const i of instances) {
      const ms = bootDurationMs(i);
      if (ms !== null) samples.push({ at: i.readyAt ?? i.createdAt, ms });
    }
  }
  return samples.sort((a, b) => a.at - b.at);
}

/** Sessions waiting for an instance of the service in every router's queue. */
export function waitingFor(cache: Pick<CacheView, 'demand'>, service: string): number {
  let n = 0;
  for (const { value: d } of cache.demand.values()) if (d.service === service && d.waiting > 0) n += d.waiting;
  return n;
}

/** GPUs per instance, where the spec has them (resources.gpus; 0 otherwise). */
export function gpusOf(spec: ServiceSpec): number {
  const g = (spec.resources as { gpus?: unknown } | undefined)?.gpus;
  if (typeof g === 'number') return g;
  if (Array.isArray(g)) return g.length;
  return 0;
}

/**
 * Instances of `spec` the accepting hosts could still start: per host the least of its free
 * instance count, free memory / the spec's memory, free GPUs / the spec's GPUs (where host
 * records carry `capacity.gpus`) and maxPerHost minus what it runs of the service.
 */
export function fleetRoom(cache: Pick<CacheView, 'hosts' | 'drains' | 'instances' | 'services'>, spec: ServiceSpec): number {
  const count = new Map<string, number>();
  const mine = new Map<string, number>();
  const memory = new Map<string, number>();
  const gpus = new Map<string, number>();
  for (const { value: i } of cache.instances.values()) {
    if (i.state === 'failed') continue;
    count.set(i.host, (count.get(i.host) ?? 0) + 1);
    if (i.service === spec.name) mine.set(i.host, (mine.get(i.host) ?? 0) + 1);
    const s = cache.services.get(i.service)?.value;
    if (s) {
      memory.set(i.host, (memory.get(i.host) ?? 0) + (s.resources?.memoryMb ?? 0));
      gpus.set(i.host, (gpus.get(i.host) ?? 0) + gpusOf(s));
    }
  }
  const needGpus = gpusOf(spec);
  // Records written by hand (or by older tools) may lack fields: no limit from what is missing.
  const needMemory = spec.resources?.memoryMb ?? 0;
  const maxPerHost = spec.maxPerHost ?? Infinity;
  let room = 0;
  for (const [id, { value: h }] of cache.hosts) {
    if (h.draining || cache.drains.has(id)) continue;
    let r = Math.min(h.capacity.instances - (count.get(id) ?? 0), maxPerHost - (mine.get(id) ?? 0));
    if (h.capacity.memoryMb > 0 && needMemory > 0) r = Math.min(r, Math.floor((h.capacity.memoryMb - (memory.get(id) ?? 0)) / needMemory));
    const capGpus = (h.capacity as { gpus?: unknown }).gpus;
    const hostGpus = typeof capGpus === 'number' ? capGpus : Array.isArray(capGpus) ? capGpus.length : undefined;
    if (needGpus > 0 && hostGpus !== undefined) r = Math.min(r, Math.floor((hostGpus - (gpus.get(id) ?? 0)) / needGpus));
    room += Number.isFinite(r) ? Math.max(0, r) : 0;
  }
  return room;
}

/** The pool of one service now (see PoolView). `explain` adds the sizing's look-ahead. */
export function poolView(cache: CacheView, spec: ServiceSpec, now: number, opts: { explain?: boolean } = {}): PoolView {
  const policy = warmPolicyOf(spec);
  const instances: InstanceRecord[] = [];
  let unclaimed = 0;
  for (const { value: i } of cache.instances.values()) {
    if (i.service !== spec.name) continue;
    instances.push(i);
    if ((i.state === 'ready' || isStarting(i.state)) && !cache.claims.has(i.id)) unclaimed++;
  }
  const waiting = waitingFor(cache, spec.name);
  const room = fleetRoom(cache, spec);
  let size: number;
  let sizing: SizingResult | undefined;
  if (policy) {
    sizing = sizePool({ policy, arrivals: arrivalsOf(cache, spec.name), boots: bootHistoryOf(cache, instances, spec.name), now, explain: opts.explain ?? false });
    size = sizing.size;
  } else {
    size = spec.warm as number;
  }
  // A static pool is never capped (today's behaviour: its slots wait for capacity).
  const slots = policy ? Math.min(size + waiting, unclaimed + room) : size + Math.min(waiting, Math.max(0, unclaimed + room - size));
  return { service: spec.name, static: !policy, size, waiting, room, slots: Math.max(0, slots), ...(sizing ? { sizing } : {}) };
}
