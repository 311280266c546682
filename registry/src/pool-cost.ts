import type { RegistryCache } from './cache.js';
import { gpusOf } from './pool-view.js';
import { isStarting } from './instance-stages.js';
import type { ServiceSpec } from './types.js';

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

/** Idle (ready, unclaimed), busy (claimed) and booting instances per service, and their GPUs, in one pass. */
export function instanceStates(cache: Pick<RegistryCache, 'instances' | 'claims'> & { services?: RegistryCache['services'] }): Map<string, PoolCost['now']> {
  const out = new Map<string, PoolCost['now']>();
  // Per-service lookups only when the service changes from one instance to the next
  // (a router runs this over every instance of the fleet about once a second).
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
    const claim = cache.claims.get(i.id);
    if ((claim && !claim.value.ended) || i.state === 'claimed') { c.busy++; c.busyGpus += gpus; }
    else if (i.state === 'ready' && !claim) { c.idle++; c.idleGpus += gpus; }
    else if (isStarting(i.state)) c.booting++;
  }
  return out;
}

/** Instance-seconds and GPU-seconds per service and state, integrated from cache snapshots. */
export interface UsageTotals { idleSec: number; busySec: number; bootingSec: number; idleGpuSec: number; busyGpuSec: number }

/**
 * Integrates instance states over time: call `sample(cache, now)` on every registry change
 * and periodically; each call adds (now - previous call) x the counts seen at the previous
 * call. The figures cover the time this process has watched, nothing before.
 */
export class UsageMeter {
  private last: { at: number; counts: Map<string, PoolCost['now']> } | undefined;
  readonly totals = new Map<string, UsageTotals>();

  sample(cache: Pick<RegistryCache, 'instances' | 'claims' | 'services'>, now: number): void {
    if (this.last && now > this.last.at) {
      const dt = (now - this.last.at) / 1000;
      for (const [service, c] of this.last.counts) {
        const t = this.totals.get(service) ?? { idleSec: 0, busySec: 0, bootingSec: 0, idleGpuSec: 0, busyGpuSec: 0 };
        t.idleSec += c.idle * dt;
        t.busySec += c.busy * dt;
        t.bootingSec += c.booting * dt;
        t.idleGpuSec += c.idleGpus * dt;
        t.busyGpuSec += c.busyGpus * dt;
        this.totals.set(service, t);
      }
    }
    if (this.last && now < this.last.at) return;
    this.last = { at: now, counts: instanceStates(cache) };
  }
}
