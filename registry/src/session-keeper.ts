import type { KvStore } from './kv.js';

/**
 * Batches session keep-alives: traffic marks a session's lease, and one flush per interval
 * refreshes every marked lease at once. A session busy with a thousand requests a second
 * costs one keep-alive per interval, not a write per request.
 */
export class SessionKeeper {
  private dirty = new Set<string>();
  private timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;

  constructor(private readonly store: KvStore, opts: { flushMs: number; onGone?: (leaseId: string) => void }) {
    this.onGone = opts.onGone;
    this.timer = setInterval(() => void this.flush(), opts.flushMs);
    this.timer.unref();
  }

  private readonly onGone: ((leaseId: string) => void) | undefined;

  touch(leaseId: string): void {
    this.dirty.add(leaseId);
  }

  async flush(): Promise<void> {
    if (this.flushing || this.dirty.size === 0) return this.flushing;
    const ids = [...this.dirty];
    this.dirty.clear();
    this.flushing = this.store
      .keepAlive(ids)
      .then((ttls) => {
        for (const [id, ttl] of ttls) if (ttl <= 0) this.onGone?.(id);
      })
      .catch(() => {
        // Retry at the next flush: the leases are still dirty.
        for (const id of ids) this.dirty.add(id);
      })
      .finally(() => { this.flushing = undefined; });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => undefined);
  }
}
