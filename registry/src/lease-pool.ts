import type { KvStore } from './kv.js';

/**
 * Pre-granted session leases, so a claim costs one transaction instead of a lease grant
 * plus a transaction. A lease's TTL runs from its grant, so pooled leases older than a
 * third of their TTL are revoked instead of used: a new session always starts with at
 * least two thirds of its idle timeout, and its first request refreshes it in full.
 */
export class LeasePool {
  private pools = new Map<number, { id: string; grantedAt: number }[]>();
  private filling = new Set<number>();
  private closed = false;

  constructor(
    private readonly store: KvStore,
    private readonly opts: { size?: number; now?: () => number } = {},
  ) {}

  private get size(): number { return this.opts.size ?? 16; }
  private now(): number { return (this.opts.now ?? Date.now)(); }

  async take(ttlSec: number): Promise<string> {
    const pool = this.pools.get(ttlSec) ?? [];
    this.pools.set(ttlSec, pool);
    const maxAge = (ttlSec * 1000) / 3;
    while (pool.length) {
      const l = pool.pop()!;
      if (this.now() - l.grantedAt <= maxAge) return l.id;
      void this.store.revokeLease(l.id).catch(() => undefined);
    }
    return this.store.grantLease(ttlSec);
  }

  /**
   * Tops the pool up in the background. Claims call it after their transaction, so grants
   * run between claims instead of competing with them.
   */
  replenish(ttlSec: number): void {
    if (!this.pools.has(ttlSec)) this.pools.set(ttlSec, []);
    this.refill(ttlSec);
  }

  /** Gives back a lease that was taken but not used (its claim found nothing). */
  giveBack(ttlSec: number, id: string, grantedAt = this.now()): void {
    if (this.closed) { void this.store.revokeLease(id).catch(() => undefined); return; }
    this.pools.get(ttlSec)?.push({ id, grantedAt });
  }

  private refill(ttlSec: number): void {
    if (this.closed || this.filling.has(ttlSec)) return;
    const pool = this.pools.get(ttlSec)!;
    if (pool.length >= this.size) return;
    this.filling.add(ttlSec);
    void (async () => {
      try {
        while (!this.closed && pool.length < this.size) {
          const batch = Math.min(8, this.size - pool.length);
          const at = this.now();
          const ids = await Promise.all(Array.from({ length: batch }, () => this.store.grantLease(ttlSec)));
          for (const id of ids) pool.push({ id, grantedAt: at });
        }
      } catch {
        // The store is unreachable: claims will grant leases themselves and report errors.
      } finally {
        this.filling.delete(ttlSec);
      }
    })();
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values()].flat();
    this.pools.clear();
    await Promise.all(all.map((l) => this.store.revokeLease(l.id).catch(() => undefined)));
  }
}
