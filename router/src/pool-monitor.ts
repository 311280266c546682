import { computeStatus, UsageMeter, type RegistryCache, type UsageTotals } from '@warmpool/registry';

/** One point of a service's pool history (the dashboard's plot). */
export interface PoolPoint {
  /** Epoch ms. */
  t: number;
  target: number;
  ready: number;
  booting: number;
  claimed: number;
  /** Sessions waiting in every router's queue. */
  waiting: number;
  /** Claims per minute over the last minute (all routers: from the registry). */
  claimRate: number;
  /** Sessions of the claim history that found an instance ready (null: none yet). */
  hitRatio: number | null;
}

/** Sampling period of the history (ms) and how much of it is kept (ms): an hour of 5 s points. */
export const HISTORY_STEP_MS = 5_000;
export const HISTORY_SPAN_MS = 3_600_000;

/**
 * Follows the fleet's pools from this router's registry cache: a point per service every
 * 5 s for the last hour (the dashboard's plot) and instance-seconds / GPU-seconds per state
 * (Prometheus counters), kept per instance and updated on each registry change (O(1) per
 * change, no rescan of the fleet). Everything is computed from the registry, so every
 * router shows the same pools.
 */
export class PoolMonitor {
  readonly usage = new UsageMeter();
  private readonly history = new Map<string, PoolPoint[]>();
  private timer: NodeJS.Timeout | undefined;
  private unfollow: (() => void) | undefined;
  private claimTimes: number[] = [];
  private cache: RegistryCache | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  private onChange = (c: { kind: string; type: string }): void => {
    if (c.kind === 'claims' && c.type === 'put') this.claimTimes.push(this.now());
  };

  /** Starts following a live cache (idempotent). */
  attach(cache: RegistryCache): void {
    if (this.cache === cache) return;
    this.cache?.off('change', this.onChange);
    this.unfollow?.();
    this.cache = cache;
    cache.on('change', this.onChange);
    this.unfollow = this.usage.follow(cache, this.now);
    this.tick();
    this.timer ??= setInterval(() => this.tick(), HISTORY_STEP_MS);
    this.timer.unref();
  }

  /** Claims per minute over the last minute. */
  claimsPerMin(): number {
    const since = this.now() - 60_000;
    while (this.claimTimes.length && this.claimTimes[0]! < since) this.claimTimes.shift();
    return this.claimTimes.length;
  }

  /** The current point of every service (also what a tick appends to the history). */
  current(): Map<string, PoolPoint> {
    const out = new Map<string, PoolPoint>();
    if (!this.cache) return out;
    const t = this.now();
    const rate = this.claimRates();
    for (const s of computeStatus(this.cache, t).services) {
      out.set(s.name, {
        t, target: s.target, ready: s.ready, booting: s.booting, claimed: s.claimed, waiting: s.waiting,
        claimRate: rate.get(s.name) ?? 0, hitRatio: s.cost.hitRatio,
      });
    }
    return out;
  }

  private claimRates(): Map<string, number> {
    const out = new Map<string, number>();
    if (!this.cache) return out;
    const since = this.now() - 60_000;
    for (const { value: c } of this.cache.claims.values()) if (c.claimedAt >= since) out.set(c.service, (out.get(c.service) ?? 0) + 1);
    return out;
  }

  private tick(): void {
    this.usage.advance(this.now());
    const cutoff = this.now() - HISTORY_SPAN_MS;
    for (const [name, p] of this.current()) {
      let h = this.history.get(name);
      if (!h) this.history.set(name, (h = []));
      h.push(p);
      while (h.length && h[0]!.t < cutoff) h.shift();
    }
    for (const name of [...this.history.keys()]) if (!this.cache?.services.has(name)) this.history.delete(name);
  }

  /** The last hour per service, oldest first. */
  historyOf(): Record<string, PoolPoint[]> {
    return Object.fromEntries(this.history);
  }

  usageTotals(): Map<string, UsageTotals> {
    this.usage.advance(this.now());
    return this.usage.totals;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.cache?.off('change', this.onChange);
    this.unfollow?.();
    this.unfollow = undefined;
  }
}
