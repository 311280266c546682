import type { KvCompare, KvEntry, KvEvent, KvOp, KvStore, KvTxnResult, KvWatch, KvWatchHandlers, LeaseHandle } from './kv.js';
import { RegistryError } from './errors.js';

interface Lease { ttlSec: number; expiresAt: number; keys: Set<string>; lost: ((r: string) => void)[]; timer?: NodeJS.Timeout }

/**
 * An in-process KvStore with the same semantics as the etcd backend (global revisions,
 * leases that expire, watches that replay from a revision). For unit tests of the logic
 * built on KvStore; every behaviour is also tested against real etcd and Consul.
 */
export class MemoryKvStore implements KvStore {
  readonly backend = 'memory' as const;
  private rev = 1;
  private data = new Map<string, KvEntry>();
  private history: KvEvent[] = [];
  private leases = new Map<string, Lease>();
  private nextLease = 1000;
  /** Each watch's keys: under `start` as a prefix, or in [start, end) with `end`. */
  private watchers = new Set<{ start: string; end?: string; h: KvWatchHandlers }>();
  private closed = false;
  private sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.expireLeases(), 100);
    this.sweeper.unref();
  }

  private check(): void {
    if (this.closed) throw new RegistryError('WARMPOOL_REGISTRY_CLOSED', 'store is closed');
  }

  /** Expires leases whose TTL passed (runs on a timer; tests with a fake clock call it). */
  expireLeases(): void {
    const t = this.now();
    for (const [id, l] of this.leases) if (l.expiresAt <= t) this.dropLease(id, 'expired');
  }

  private dropLease(id: string, reason: string): void {
    const l = this.leases.get(id);
    if (!l) return;
    this.leases.delete(id);
    if (l.timer) clearInterval(l.timer);
    const ops: KvOp[] = [...l.keys].filter((k) => this.data.get(k)?.lease === id).map((key) => ({ type: 'delete' as const, key }));
    if (ops.length) this.apply(ops);
    for (const fn of l.lost) fn(reason);
  }

  private apply(ops: KvOp[]): void {
    this.rev++;
    const rev = String(this.rev);
    const events: KvEvent[] = [];
    for (const op of ops) {
      if (op.type === 'put') {
        const prev = this.data.get(op.key);
        if (prev?.lease) this.leases.get(prev.lease)?.keys.delete(op.key);
        const e: KvEntry = { key: op.key, value: op.value, modRevision: rev, ...(op.lease ? { lease: op.lease } : {}) };
        this.data.set(op.key, e);
        if (op.lease) this.leases.get(op.lease)?.keys.add(op.key);
        events.push({ type: 'put', key: op.key, value: op.value, modRevision: rev });
      } else if (this.data.has(op.key)) {
        const prev = this.data.get(op.key);
        if (prev?.lease) this.leases.get(prev.lease)?.keys.delete(op.key);
        this.data.delete(op.key);
        events.push({ type: 'delete', key: op.key, modRevision: rev });
      }
    }
    this.history.push(...events);
    for (const w of this.watchers) {
      const mine = events.filter((e) => inWatch(w, e.key));
      if (mine.length) queueMicrotask(() => w.h.onEvents(mine, rev));
    }
  }

  private holds(c: KvCompare): boolean {
    const e = this.data.get(c.key);
    switch (c.op) {
      case 'absent': return e === undefined;
      case 'present': return e !== undefined;
      case 'modRevision': return e !== undefined && e.modRevision === c.equals;
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.check();
    const e = this.data.get(key);
    return e ? { ...e } : undefined;
  }

  async list(prefix: string): Promise<{ revision: string; entries: KvEntry[] }> {
    this.check();
    const entries = [...this.data.values()].filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1)).map((e) => ({ ...e }));
    return { revision: String(this.rev), entries };
  }

  async txn(compares: KvCompare[], ops: KvOp[], readOnFailure: string[] = []): Promise<KvTxnResult> {
    this.check();
    for (const op of ops) {
      if (op.type === 'put' && op.lease && !this.leases.has(op.lease)) {
        throw new RegistryError('WARMPOOL_LEASE_LOST', `lease ${op.lease} not found`);
      }
    }
    if (compares.every((c) => this.holds(c))) {
      if (ops.length) this.apply(ops);
      return { succeeded: true, revision: String(this.rev) };
    }
    return { succeeded: false, revision: String(this.rev), reads: readOnFailure.map((k) => { const e = this.data.get(k); return e ? { ...e } : undefined; }) };
  }

  private newLease(ttlSec: number): string {
    const id = String(this.nextLease++);
    this.leases.set(id, { ttlSec, expiresAt: this.now() + ttlSec * 1000, keys: new Set(), lost: [] });
    return id;
  }

  async grantKeptLease(ttlSec: number): Promise<LeaseHandle> {
    this.check();
    const id = this.newLease(ttlSec);
    const l = this.leases.get(id)!;
    l.timer = setInterval(() => { l.expiresAt = this.now() + ttlSec * 1000; }, Math.max(50, (ttlSec * 1000) / 3));
    l.timer.unref();
    return {
      id,
      ttlSec,
      onLost: (fn) => { l.lost.push(fn); },
      revoke: async () => { if (l.timer) clearInterval(l.timer); this.dropLease(id, 'revoked'); },
      release: () => { if (l.timer) clearInterval(l.timer); },
    };
  }

  /** Test hook: make a kept lease vanish as if it had expired during a partition. */
  loseLease(id: string): void {
    this.dropLease(id, 'lost');
  }

  async grantLease(ttlSec: number): Promise<string> {
    this.check();
    return this.newLease(ttlSec);
  }

  async keepAlive(leaseIds: string[]): Promise<Map<string, number>> {
    this.check();
    const out = new Map<string, number>();
    for (const id of leaseIds) {
      const l = this.leases.get(id);
      if (!l) { out.set(id, 0); continue; }
      l.expiresAt = this.now() + l.ttlSec * 1000;
      out.set(id, l.ttlSec);
    }
    return out;
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.check();
    this.dropLease(leaseId, 'revoked');
  }

  watch(prefix: string, afterRevision: string, h: KvWatchHandlers): Promise<KvWatch> {
    return this.startWatch({ start: prefix, h }, afterRevision);
  }

  watchRange(start: string, end: string, afterRevision: string, h: KvWatchHandlers): Promise<KvWatch> {
    return this.startWatch({ start, end, h }, afterRevision);
  }

  private async startWatch(w: { start: string; end?: string; h: KvWatchHandlers }, afterRevision: string): Promise<KvWatch> {
    this.check();
    const h = w.h;
    const after = BigInt(afterRevision);
    const missed = this.history.filter((e) => BigInt(e.modRevision) > after && inWatch(w, e.key));
    if (missed.length) {
      const rev = String(this.rev);
      queueMicrotask(() => h.onEvents(missed, rev));
    }
    this.watchers.add(w);
    return { close: async () => { this.watchers.delete(w); } };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const l of this.leases.values()) if (l.timer) clearInterval(l.timer);
    this.watchers.clear();
  }
}

function inWatch(w: { start: string; end?: string }, key: string): boolean {
  return w.end === undefined ? key.startsWith(w.start) : key >= w.start && key < w.end;
}
