import type { KvStore } from './kv.js';

/** What the keeper knows of one session lease. */
interface Kept {
  /** The lease's TTL (the session's idle timeout), ms. */
  ttlMs: number;
  /**
   * The latest time the lease is known to have been refreshed (ms since epoch): our own
   * last acknowledged keep-alive, or the worst case for a lease we never refreshed.
   */
  refreshedAt: number;
  /** The last traffic (ms since epoch); the lease is due when this is after `refreshedAt`. */
  touchedAt: number;
}

export interface SessionKeeperOptions {
  /** How often due keep-alives are collected and sent in one batch (ms). */
  flushMs: number;
  /** Refreshes per TTL at most (default 3): a lease is refreshed at most every TTL / this. */
  perTtl?: number;
  onGone?: (leaseId: string) => void;
  now?: () => number;
}

/**
 * Session keep-alives proportional to what expires, not to traffic. Traffic marks a session's
 * lease; a marked lease is refreshed once a TTL / 3 has passed since its last refresh, all due
 * leases in one batch per flush. A session with steady traffic thus costs at most 3
 * keep-alives per idle timeout from each router that serves it (plus one on its first
 * request there), however many requests it makes; an idle session costs none.
 *
 * Never early: traffic at time t is followed by a refresh at most TTL / 3 after the previous
 * one, so the lease ends no sooner than t + TTL (the idle timeout counts from the last
 * request) and no later than t + 4/3 TTL. A router that never refreshed a lease assumes it
 * was last refreshed a third of a TTL before the session was created (a pooled lease is at
 * most that old, see LeasePool, and an instance's pre-granted lease is refreshed that often
 * by its host), so its first refresh is never late either.
 */
export class SessionKeeper {
  private kept = new Map<string, Kept>();
  private timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;
  private readonly onGone: ((leaseId: string) => void) | undefined;
  private readonly now: () => number;
  private readonly perTtl: number;
  /** Keep-alives sent (one per lease per batch): what the fleet-scale figures count. */
  sent = 0;

  constructor(private readonly store: KvStore, opts: SessionKeeperOptions) {
    this.onGone = opts.onGone;
    this.now = opts.now ?? Date.now;
    this.perTtl = opts.perTtl ?? 3;
    this.timer = setInterval(() => void this.flush(), opts.flushMs);
    this.timer.unref();
  }

  /**
   * Records traffic on a session lease. `ttlSec` is the session's idle timeout; `createdAt`
   * (ms) the session's creation, the bound on the lease's last refresh when we never
   * refreshed it ourselves.
   */
  touch(leaseId: string, ttlSec: number, createdAt: number): void {
    const now = this.now();
    const k = this.kept.get(leaseId);
    if (k) { k.touchedAt = now; return; }
    const ttlMs = ttlSec * 1000;
    this.kept.set(leaseId, { ttlMs, refreshedAt: Math.min(now, createdAt) - ttlMs / this.perTtl, touchedAt: now });
  }

  /**
   * Sends the keep-alives that are due (`all`: every lease with traffic since its last
   * refresh, as on close); resolves when they were answered (or failed).
   */
  async flush(all = false): Promise<void> {
    if (this.flushing) return this.flushing;
    const now = this.now();
    const due: string[] = [];
    for (const [id, k] of this.kept) {
      if (k.touchedAt > k.refreshedAt) {
        if (all || now - k.refreshedAt >= k.ttlMs / this.perTtl) due.push(id);
      } else if (now - k.refreshedAt > k.ttlMs) {
        // Idle past its TTL: nothing to remember (the lease has expired or someone else keeps it).
        this.kept.delete(id);
      }
    }
    if (due.length === 0) return;
    this.sent += due.length;
    this.flushing = this.store
      .keepAlive(due)
      .then((ttls) => {
        for (const [id, ttl] of ttls) {
          const k = this.kept.get(id);
          if (ttl <= 0) {
            this.kept.delete(id);
            this.onGone?.(id);
          } else if (k) {
            // Refreshed when it was sent, at the latest: count from there (never late).
            // Traffic seen since then is after `now` and keeps the lease marked.
            k.refreshedAt = now;
          }
        }
      })
      .catch(() => {
        // Retried at the next flush: the leases stay marked, and a TTL leaves 2/3 of slack.
      })
      .finally(() => { this.flushing = undefined; });
    return this.flushing;
  }

  /** Leases known to this keeper (tests, metrics). */
  get size(): number { return this.kept.size; }

  /** Stops the timer after one last flush of what is due. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing?.catch(() => undefined);
    await this.flush(true).catch(() => undefined);
  }
}
