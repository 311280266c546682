import type { CacheChange, RegistryCache, Versioned } from './cache.js';
import { gpusOf } from './pool-view.js';
import { isStarting } from './instance-stages.js';
import type { ClaimRecord, InstanceRecord, ServiceSpec } from './types.js';

/**
 * What a pool costs and what it buys, per service, from what the registry holds (pure):
 * the sessions of the claim history (claims, ended claims and tombstones, kept 30-60 min)
 * and the instances alive now. Long-running figures (instance-seconds since a router
 * started) come from UsageMeter, which integrates the same states over time.
 */
export interface PoolCost {
  /** Sessions in the history. */
  sessions: number;
  /** Sessions that found an instance ready (waitedMs 0) / sessions with a known wait. */
  hitRatio: number | null;
  /** Wait of the sessions that waited (ms): count, p50, p95, max. */
  waits: { count: number; p50Ms: number | null; p95Ms: number | null; maxMs: number | null };
  /** Instances now: ready and unclaimed (idle), claimed (busy), booting; and their GPUs. */
  now: { idle: number; busy: number; booting: number; idleGpus: number; busyGpus: number };
}

/** Upper bounds (s) of the wait histogram: Prometheus buckets of warmpool_router_session_wait_seconds. */
export const WAIT_BUCKETS_SEC = [0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

function quantile(sorted: number[], q: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

type CostCache = Pick<RegistryCache, 'instances' | 'claims' | 'tombstones' | 'services'>;

export function poolCost(cache: CostCache, spec: ServiceSpec): PoolCost {
  const waits = new Map<string, number | undefined>();
  for (const { value: c } of cache.claims.values()) if (c.service === spec.name) waits.set(c.sessionId, c.waitedMs);
  for (const { value: t } of cache.tombstones.values()) {
    if (t.service === spec.name && t.claimedAt !== undefined && !waits.has(t.sessionId)) waits.set(t.sessionId, t.waitedMs);
  }
  const known = [...waits.values()].filter((w): w is number => w !== undefined);
  const waited = known.filter((w) => w > 0).sort((a, b) => a - b);
  const now = instanceStates(cache).get(spec.name) ?? { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 };
  return {
    sessions: waits.size,
    hitRatio: known.length ? (known.length - waited.length) / known.length : null,
    waits: { count: waited.length, p50Ms: quantile(waited, 0.5), p95Ms: quantile(waited, 0.95), maxMs: waited.at(-1) ?? null },
    now,
  };
}

type StatesCache = Pick<RegistryCache, 'instances' | 'claims'> & { services?: RegistryCache['services'] };
type UsageState = 'idle' | 'busy' | 'booting';

/**
 * What an instance counts as: busy (claimed, or a claim not ended), idle (ready, no claim),
 * booting (pulling, booting, warming), or nothing (a claim ended, draining, failed).
 */
function usageStateOf(i: InstanceRecord, claim: Versioned<ClaimRecord> | undefined): UsageState | undefined {
  if ((claim && !claim.value.ended) || i.state === 'claimed') return 'busy';
  if (i.state === 'ready' && !claim) return 'idle';
  if (isStarting(i.state)) return 'booting';
  return undefined;
}

function addTo(c: PoolCost['now'], state: UsageState, gpus: number, sign: 1 | -1 = 1): void {
  c[state] += sign;
  if (state === 'idle') c.idleGpus += sign * gpus;
  else if (state === 'busy') c.busyGpus += sign * gpus;
}

/** Idle (ready, unclaimed), busy (claimed) and booting instances per service, and their GPUs, in one pass. */
export function instanceStates(cache: StatesCache): Map<string, PoolCost['now']> {
  const out = new Map<string, PoolCost['now']>();
  // Per-service lookups only when the service changes from one instance to the next.
  let service: string | undefined;
  let c: PoolCost['now'] = { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 };
  let gpus = 0;
  for (const { value: i } of cache.instances.values()) {
    if (i.service !== service) {
      service = i.service;
      let found = out.get(service);
      if (!found) out.set(service, (found = { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 }));
      c = found;
      const spec = cache.services?.get(service)?.value;
      gpus = spec ? gpusOf(spec) : 0;
    }
    const state = usageStateOf(i, cache.claims.get(i.id));
    if (state) addTo(c, state, gpus);
  }
  return out;
}

/** Instance-seconds and GPU-seconds per service and state, integrated from cache snapshots. */
export interface UsageTotals { idleSec: number; busySec: number; bootingSec: number; idleGpuSec: number; busyGpuSec: number }

type Contribution = { service: string; state: UsageState; gpus: number };

/** What one instance adds to its service's counts now (undefined: nothing). */
function contributionOf(cache: StatesCache, id: string): Contribution | undefined {
  const i = cache.instances.get(id)?.value;
  if (!i) return undefined;
  const state = usageStateOf(i, cache.claims.get(id));
  if (!state) return undefined;
  const spec = cache.services?.get(i.service)?.value;
  return { service: i.service, state, gpus: spec ? gpusOf(spec) : 0 };
}

/**
 * Integrates instance states over time, per service: idle (ready, unclaimed), busy
 * (claimed) and booting instance-seconds, idle and busy GPU-seconds. The counts are kept
 * per instance and updated from each registry change (`follow`, or `apply` by hand), so a
 * change costs O(1) and not a scan of the fleet; `sample(cache, now)` recounts everything
 * (after a re-list, or for a cache that is not followed). Between two calls the counts are
 * constant, so each call adds (now - previous call) x the counts up to then, exactly. The
 * figures cover the time this process has watched, nothing before. Clock: epoch ms.
 */
export class UsageMeter {
  readonly totals = new Map<string, UsageTotals>();
  private at: number | undefined;
  private readonly counts = new Map<string, PoolCost['now']>();
  private readonly byInstance = new Map<string, Contribution>();

  /** The counts now, per service (what the totals grow by per second). */
  current(): ReadonlyMap<string, Readonly<PoolCost['now']>> {
    return this.counts;
  }

  /** Adds the time since the last call at the current counts; a clock that went back adds nothing. */
  advance(now: number): void {
    if (this.at !== undefined && now > this.at) {
      const dt = (now - this.at) / 1000;
      for (const [service, c] of this.counts) {
        let t = this.totals.get(service);
        if (!t) this.totals.set(service, (t = { idleSec: 0, busySec: 0, bootingSec: 0, idleGpuSec: 0, busyGpuSec: 0 }));
        t.idleSec += c.idle * dt;
        t.busySec += c.busy * dt;
        t.bootingSec += c.booting * dt;
        t.idleGpuSec += c.idleGpus * dt;
        t.busyGpuSec += c.busyGpus * dt;
      }
    }
    if (this.at === undefined || now > this.at) this.at = now;
  }

  /** Recounts every instance of the cache (O(instances)), after adding the time up to `now`. */
  sample(cache: StatesCache, now: number): void {
    this.advance(now);
    this.byInstance.clear();
    this.counts.clear();
    for (const id of cache.instances.keys()) this.set(id, contributionOf(cache, id));
  }

  /** Takes one registry change into account (O(1); a service's spec change recounts the fleet). */
  apply(cache: StatesCache, change: Pick<CacheChange, 'kind' | 'parts'>, now: number): void {
    if (change.kind === 'services') { this.sample(cache, now); return; }
    if (change.kind !== 'instances' && change.kind !== 'claims') return;
    const id = change.parts[1];
    if (id === undefined) return;
    this.advance(now);
    this.set(id, contributionOf(cache, id));
  }

  /** Follows a live cache from now on: a recount now, then one update per change. Returns the unsubscribe. */
  follow(cache: RegistryCache, now: () => number = Date.now): () => void {
    this.sample(cache, now());
    const onChange = (c: CacheChange): void => this.apply(cache, c, now());
    const onSynced = (): void => this.sample(cache, now());
    cache.on('change', onChange);
    cache.on('synced', onSynced);
    return () => { cache.off('change', onChange); cache.off('synced', onSynced); };
  }

  private set(id: string, next: Contribution | undefined): void {
    const prev = this.byInstance.get(id);
    if (prev) this.add(prev, -1);
    if (next) { this.byInstance.set(id, next); this.add(next, 1); } else this.byInstance.delete(id);
  }

  private add(c: Contribution, sign: 1 | -1): void {
    let n = this.counts.get(c.service);
    if (!n) this.counts.set(c.service, (n = { idle: 0, busy: 0, booting: 0, idleGpus: 0, busyGpus: 0 }));
    addTo(n, c.state, c.gpus, sign);
  }
}
