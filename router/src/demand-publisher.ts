import { randomBytes } from 'node:crypto';
import type { DemandRecord, KvOp, LeaseHandle, Registry } from '@warmpool/registry';

export interface DemandPublisherOptions {
  /** Sessions waiting here per service, now. */
  waiting: (service: string) => number;
  services: () => string[];
  now?: () => number;
  /** TTL of the router's demand lease: a dead router's demand is gone within it. */
  leaseTtlSec?: number;
  onError?: (err: unknown) => void;
}

/** A waiter's claim that carries this router's demand record (see opsForClaim). */
export interface DemandClaim { service: string; left: number | undefined; overlapped: boolean }

/** `published` value meaning "the store may hold anything": the next flush writes it again. */
const UNKNOWN = -1;

/** Coalescing delay for queue changes (ms): a burst of joins costs one write per service. */
const FLUSH_DELAY_MS = 20;
const RETRY_MAX_MS = 5_000;

/**
 * Publishes this router's waiting sessions per service as DemandRecords
 * ({p}demand/{service}/{router}) on a lease of its own, so that agents boot one instance
 * per waiter at once (registry/src/pool-view.ts). Writes only when a count changes
 * (coalesced); a waiter that claims an instance takes its own decrement into the claim
 * transaction (`opsForClaim`), so agents never see the instance gone and the waiter still
 * there. etcd unreachable: retried with backoff; the lease lost: re-granted, every record
 * put again. Closing revokes the lease (the records go at once).
 */
export class DemandPublisher {
  readonly routerId = `r-${randomBytes(6).toString('hex')}`;
  private lease: LeaseHandle | undefined;
  private granting: Promise<LeaseHandle> | undefined;
  /** service -> waiting as last written (absent: no record). */
  private published = new Map<string, number>();
  private since = new Map<string, number>();
  private claiming = new Map<string, Set<DemandClaim>>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private again = false;
  private retryMs = 100;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly registry: Registry, private readonly opts: DemandPublisherOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** A queue changed: publish soon. */
  changed(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => { this.timer = undefined; void this.flush(); }, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  private record(service: string, waiting: number): DemandRecord {
    if (!this.since.has(service)) this.since.set(service, this.now());
    return { service, router: this.routerId, waiting, oldestSince: this.since.get(service)!, at: this.now() };
  }

  /** A waiter's claim begins (see opsForClaim); end it with endClaim. */
  beginClaim(service: string): DemandClaim {
    const mine: DemandClaim = { service, left: undefined, overlapped: false };
    const others = this.claiming.get(service) ?? new Set<DemandClaim>();
    if (others.size) { mine.overlapped = true; for (const o of others) o.overlapped = true; }
    others.add(mine);
    this.claiming.set(service, others);
    return mine;
  }

  /**
   * The writes a waiter's claim carries: this router's record with one waiter less (the
   * claiming one is still queued while its transaction runs). None before the first
   * publish or while the lease is away.
   */
  opsForClaim(claim: DemandClaim): KvOp[] {
    const lease = this.lease;
    if (!lease || !this.published.has(claim.service)) return [];
    const key = this.registry.keys.demand(claim.service, this.routerId);
    const left = Math.max(0, this.opts.waiting(claim.service) - 1);
    claim.left = left;
    if (left === 0) return [{ type: 'delete', key }];
    return [{ type: 'put', key, value: JSON.stringify(this.record(claim.service, left)), lease: lease.id }];
  }

  /**
   * The claim is over. `outcome` 'committed': its writes are in the store; 'failed': nothing
   * of it is; 'unknown' (an error: it may have committed). When several claims of the
   * service overlapped, or the outcome is unknown, which value the store kept is not known:
   * the next flush writes the record again.
   */
  endClaim(claim: DemandClaim, outcome: 'committed' | 'failed' | 'unknown'): void {
    this.claiming.get(claim.service)?.delete(claim);
    if (claim.left === undefined || outcome === 'failed') return;
    if (outcome === 'unknown' || claim.overlapped) this.published.set(claim.service, UNKNOWN);
    else if (claim.left === 0) { this.published.delete(claim.service); this.since.delete(claim.service); }
    else this.published.set(claim.service, claim.left);
    this.changed();
  }

  private async leaseNow(): Promise<LeaseHandle> {
    if (this.lease) return this.lease;
    this.granting ??= this.registry.store.grantKeptLease(this.opts.leaseTtlSec ?? 10).then((l) => {
      this.lease = l;
      l.onLost(() => {
        if (this.lease !== l) return;
        // Every record went with it: put them all again on a new lease.
        this.lease = undefined;
        this.published.clear();
        this.changed();
      });
      return l;
    }).finally(() => { this.granting = undefined; });
    return this.granting;
  }

  /** Writes every service whose count differs from what was last written. */
  flush(): Promise<void> {
    if (this.flushing) { this.again = true; return this.flushing; }
    this.flushing = this.doFlush().then(() => { this.retryMs = 100; }, (err: unknown) => {
      this.opts.onError?.(err);
      if (this.closed) return;
      const t = setTimeout(() => void this.flush(), this.retryMs);
      t.unref();
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    }).finally(() => {
      this.flushing = undefined;
      if (this.again && !this.closed) { this.again = false; void this.flush(); }
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (this.closed) return;
    const services = new Set([...this.opts.services(), ...this.published.keys()]);
    for (const service of services) {
      const waiting = this.opts.waiting(service);
      const was = this.published.get(service);
      if (was !== UNKNOWN && waiting === (was ?? 0)) continue;
      const key = this.registry.keys.demand(service, this.routerId);
      if (waiting === 0) {
        // Deleting a key that is not there is harmless: UNKNOWN ends here too.
        await this.registry.store.txn([], [{ type: 'delete', key }]);
        this.published.delete(service);
        this.since.delete(service);
        continue;
      }
      const lease = await this.leaseNow();
      await this.registry.store.txn([], [{ type: 'put', key, value: JSON.stringify(this.record(service, waiting)), lease: lease.id }]);
      this.published.set(service, waiting);
    }
  }

  /** Revokes the lease: this router's demand disappears at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.flushing?.catch(() => undefined);
    const lease = this.lease ?? (await this.granting?.catch(() => undefined));
    this.lease = undefined;
    await lease?.revoke().catch(() => undefined);
  }
}
