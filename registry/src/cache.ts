import { EventEmitter } from 'node:events';
import type { KvEntry, KvEvent, KvStore, KvWatch, KvWatchHandlers } from './kv.js';
import type { Keys} from './keys.js';
import { type KeyKind } from './keys.js';
import type { ClaimRecord, DemandRecord, HostRecord, InstanceRecord, ServiceSpec, SessionRecord, SlotRecord, TombstoneRecord } from './types.js';
import { ReadyIndex } from './ready-index.js';
import { BRIDGEABLE_KINDS, planWatchRanges } from './watch-ranges.js';

export interface Versioned<T> { value: T; modRevision: string; lease?: string }

export interface CacheChange {
  kind: KeyKind;
  type: 'put' | 'delete';
  key: string;
  parts: string[];
}

export type CacheState = 'idle' | 'syncing' | 'live' | 'closed';

/** Every kind a cache can follow; idempotency keys are only ever read by key, never cached. */
export const CACHED_KINDS: readonly KeyKind[] = ['services', 'hosts', 'drain', 'instances', 'claims', 'sessions', 'slots', 'tombstones', 'cluster', 'demand'];

export interface CacheOptions {
  /**
   * Mean interval (ms, default 60,000, jittered 0.5x to 1.5x) of the consistency check: a
   * count-only range of each followed prefix at the revision its watch has reached, compared
   * with the copy. Only a difference re-lists (that prefix). Stores that cannot count
   * (Consul, memory) re-list everything at this interval instead.
   */
  resyncMs?: number;
  /** The kinds to list and watch (default CACHED_KINDS); a router needs no slots. */
  kinds?: readonly KeyKind[];
  /** After a watch reconnects, its prefix is re-listed within this many ms (jittered; default 2,000). */
  reconnectJitterMs?: number;
  random?: () => number;
  onError?: (err: unknown) => void;
}

/** One followed prefix: its own list revision, and the watch it shares with its range. */
interface Followed {
  kind: KeyKind;
  prefix: string;
  /** The revision this prefix's copy is known complete at. */
  revision: string;
  group: WatchGroup;
}

/**
 * Followed prefixes watched together (see watch-ranges.ts): one watch over [start, end),
 * or over the prefix `start` alone. Listed, re-listed and re-watched together.
 */
interface WatchGroup {
  members: Followed[];
  start: string;
  end: string | undefined;
  watch: KvWatch | undefined;
  resyncing: Promise<void> | undefined;
  disconnected: boolean;
}

/** a > b for decimal revision strings without leading zeros (no BigInt on the hot path). */
function revAfter(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}

/** What the consistency checks found (the fleet-scale figures report them). */
export interface CacheCounters {
  /** Full lists of one prefix (start, reset, reconnect, a failed check, a fallback re-list). */
  lists: number;
  checks: number;
  mismatches: number;
}

/**
 * A watch-fed copy of the registry prefixes one part needs. Each kind's prefix is listed,
 * then watched from the listed revision. A healthy watch is trusted: a prefix is re-listed
 * only when its watch is reset (compaction, restarted store), reconnects, or the cheap
 * jittered consistency check (see CacheOptions.resyncMs) finds its count differs; the
 * re-list applies only the differences, so no event is lost or applied twice.
 *
 * Events: 'change' (CacheChange) per applied key change, 'ready' (service) when an instance
 * joins a ready set, 'synced' after each full list of every prefix, 'state' (CacheState).
 * The link to the store: `disconnectedSince`.
 */
export class RegistryCache extends EventEmitter {
  readonly keys: Keys;
  services = new Map<string, Versioned<ServiceSpec>>();
  hosts = new Map<string, Versioned<HostRecord>>();
  drains = new Set<string>();
  instances = new Map<string, Versioned<InstanceRecord>>();
  claims = new Map<string, Versioned<ClaimRecord>>();
  sessions = new Map<string, Versioned<SessionRecord>>();
  slots = new Map<string, Versioned<SlotRecord>>();
  tombstones = new Map<string, Versioned<TombstoneRecord>>();
  /** Waiting sessions per router, keyed by the full key ({p}demand/{service}/{router}). */
  demand = new Map<string, Versioned<DemandRecord>>();
  cluster: { secret: string } | undefined;
  readonly ready = new ReadyIndex();
  /** The highest revision any followed prefix reached. */
  revision = '0';
  state: CacheState = 'idle';
  /**
   * When the watch lost its link to the store (ms since epoch), else null. The copy is
   * kept meanwhile (it may lag behind the store) and re-listed once the link is back.
   */
  disconnectedSince: number | null = null;
  /** When the last full list of every prefix completed (ms since epoch); null before the first one. */
  syncedAt: number | null = null;
  readonly counters: CacheCounters = { lists: 0, checks: 0, mismatches: 0 };
  private readonly followed: Followed[];
  private readonly groups: WatchGroup[];
  /** Keys under a followed prefix that hold no usable record (corrupt JSON, outside the layout): counted, not kept. */
  private readonly ignored = new Set<string>();
  private checkTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  private readonly opts: Required<Omit<CacheOptions, 'onError' | 'kinds'>> & Pick<CacheOptions, 'onError'>;

  constructor(private readonly store: KvStore, keys: Keys, opts: CacheOptions = {}) {
    super();
    this.keys = keys;
    this.opts = {
      resyncMs: opts.resyncMs ?? 60_000, reconnectJitterMs: opts.reconnectJitterMs ?? 2_000,
      random: opts.random ?? Math.random, onError: opts.onError,
    };
    const prefixOf = (kind: KeyKind): string => (kind === 'cluster' ? keys.cluster() : keys.kindPrefix(kind));
    const kinds = [...new Set(opts.kinds ?? CACHED_KINDS)].filter((k) => k !== 'idempotency');
    const byPrefix = new Map(kinds.map((kind) => [prefixOf(kind), kind]));
    // One watch per contiguous range where the store can watch a range, else per prefix.
    const ranges = store.watchRange
      ? planWatchRanges([...byPrefix.keys()], [...CACHED_KINDS, 'idempotency' as const].map(prefixOf), BRIDGEABLE_KINDS.map(prefixOf))
      : [...byPrefix.keys()].map((p) => ({ prefixes: [p], start: p, end: undefined }));
    this.followed = [];
    this.groups = ranges.map((r) => {
      const g: WatchGroup = { members: [], start: r.start, end: r.end, watch: undefined, resyncing: undefined, disconnected: false };
      for (const prefix of r.prefixes) g.members.push({ kind: byPrefix.get(prefix)!, prefix, revision: '0', group: g });
      this.followed.push(...g.members);
      return g;
    });
  }

  async start(): Promise<void> {
    await this.resync();
    this.scheduleCheck(this.opts.resyncMs);
  }

  private closed(): boolean {
    return this.state === 'closed';
  }

  private setState(s: CacheState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  private setConnected(g: WatchGroup, connected: boolean): void {
    g.disconnected = !connected;
    const down = connected ? this.groups.some((x) => x.disconnected) : true;
    if (down === (this.disconnectedSince !== null)) return;
    this.disconnectedSince = down ? Date.now() : null;
  }

  private scheduleCheck(ms: number): void {
    if (this.closed()) return;
    this.checkTimer = setTimeout(() => {
      this.check().then((backoff) => this.scheduleCheck(backoff ? Math.min(ms * 2, this.opts.resyncMs * 8) : this.opts.resyncMs), (err) => {
        this.opts.onError?.(err);
        this.scheduleCheck(Math.min(ms * 2, this.opts.resyncMs * 8));
      });
    }, ms * (0.5 + this.opts.random()));
    this.checkTimer.unref();
  }

  /**
   * The consistency check: per followed prefix, etcd's key count at the revision its watch
   * reached against the copy's. Resolves true when the store was slow or failing (the next
   * check backs off), false otherwise.
   */
  async check(): Promise<boolean> {
    const count = this.store.count?.bind(this.store);
    if (!count) { await this.resync(); return false; }
    for (const f of this.followed) {
      if (this.closed()) return false;
      if (!f.group.watch || f.group.resyncing) continue;
      this.counters.checks++;
      // The copy as it stands at the revision asked about: events that arrive while etcd
      // counts move the copy past it (comparing with the copy then was a false mismatch).
      const at = f.revision;
      const local = this.localCount(f);
      let n: number;
      try {
        n = await count(f.prefix, at);
      } catch (err) {
        // A compacted revision cannot be counted: the copy is re-listed instead. Anything
        // else (etcd slow or away) waits for the next, later check.
        if (/compact/i.test(String((err as Error)?.message))) { void this.resyncGroup(f.group); continue; }
        this.opts.onError?.(err);
        return true;
      }
      if (n !== local) {
        this.counters.mismatches++;
        this.opts.onError?.(new Error(`registry cache: ${f.prefix} holds ${n} keys at revision ${at}, the copy ${local}: re-listing it`));
        // Re-listed with the prefixes it shares a watch with (the watch restarts after the lists).
        await this.resyncGroup(f.group);
      }
    }
    return false;
  }

  private localCount(f: Followed): number {
    let ignored = 0;
    for (const k of this.ignored) if (k.startsWith(f.prefix)) ignored++;
    switch (f.kind) {
      case 'services': return this.services.size + ignored;
      case 'hosts': return this.hosts.size + ignored;
      case 'drain': return this.drains.size + ignored;
      case 'instances': return this.instances.size + ignored;
      case 'claims': return this.claims.size + ignored;
      case 'sessions': return this.sessions.size + ignored;
      case 'slots': return this.slots.size + ignored;
      case 'tombstones': return this.tombstones.size + ignored;
      case 'cluster': return (this.cluster ? 1 : 0) + ignored;
      case 'demand': return this.demand.size + ignored;
      default: return ignored;
    }
  }

  /** Re-lists every followed prefix, applies the differences and restarts each watch after its list. */
  resync(): Promise<void> {
    if (this.resyncing) return this.resyncing;
    this.resyncing = (async () => {
      await Promise.all(this.groups.map((g) => this.resyncGroup(g)));
      if (this.closed()) return;
      this.syncedAt = Date.now();
      this.emit('synced');
    })().finally(() => { this.resyncing = undefined; });
    return this.resyncing;
  }

  private resyncGroup(g: WatchGroup): Promise<void> {
    if (g.resyncing) return g.resyncing;
    g.resyncing = this.doResync(g).finally(() => {
      g.resyncing = undefined;
      if (!this.closed() && this.groups.every((x) => x.watch)) this.setState('live');
    });
    return g.resyncing;
  }

  /** Lists one prefix, retrying with backoff until it works; undefined once the cache is closed. */
  private async listUntilDone(f: Followed): Promise<{ revision: string; entries: KvEntry[] } | undefined> {
    let delay = 100;
    for (;;) {
      if (this.closed()) return undefined;
      try {
        const listed = await this.store.list(f.prefix);
        this.counters.lists++;
        return listed;
      } catch (err) {
        this.setConnected(f.group, false);
        this.opts.onError?.(err);
        await this.pause(delay);
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** Applies one prefix's list: puts what differs, deletes what the list lacks. */
  private applyList(f: Followed, listed: { revision: string; entries: KvEntry[] }): void {
    const seen = new Set<string>();
    for (const e of listed.entries) {
      seen.add(e.key);
      if (this.currentRevision(e.key) !== e.modRevision) this.applyPut(e.key, e.value, e.modRevision, e.lease);
    }
    for (const key of this.allKeys(f.kind)) if (!seen.has(key)) this.applyDelete(key);
    for (const key of [...this.ignored]) if (key.startsWith(f.prefix) && !seen.has(key)) this.ignored.delete(key);
    f.revision = listed.revision;
    this.advance(listed.revision);
  }

  private async doResync(g: WatchGroup): Promise<void> {
    if (this.closed()) return;
    this.setState('syncing');
    const old = g.watch;
    g.watch = undefined;
    await old?.close().catch(() => undefined);
    const lists = await Promise.all(g.members.map((f) => this.listUntilDone(f)));
    if (this.closed()) return;
    this.setConnected(g, true);
    g.members.forEach((f, i) => this.applyList(f, lists[i]!));
    // The watch starts after the oldest list; each prefix drops the events its own list
    // already holds (onEvents), as a watch of its own started at its list would.
    const from = g.members.reduce((min, f) => (revAfter(min, f.revision) ? f.revision : min), g.members[0]!.revision);
    try {
      const handlers: KvWatchHandlers = {
        onEvents: (events, revision) => this.onEvents(events, revision, g),
        onReset: () => { void this.resyncGroup(g); },
        onConnectionChange: (connected) => {
          this.setConnected(g, connected);
          // The watch resumes by itself; the re-list after a reconnect is spread over a
          // few seconds so that a restarted etcd is not listed by every part at once.
          if (connected) setTimeout(() => void this.resyncGroup(g), this.opts.random() * this.opts.reconnectJitterMs).unref();
        },
      };
      const w = g.end === undefined || !this.store.watchRange
        ? await this.store.watch(g.start, from, handlers)
        : await this.store.watchRange(g.start, g.end, from, handlers);
      if (this.closed()) { await w.close(); return; }
      g.watch = w;
    } catch (err) {
      this.opts.onError?.(err);
      setTimeout(() => void this.resyncGroup(g), 100).unref();
    }
  }

  /** Waits `ms`, or less if the cache is closed meanwhile. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const timer = setTimeout(() => { this.off('state', onClose); r(); }, ms);
      const onClose = (s: CacheState): void => { if (s === 'closed') { clearTimeout(timer); r(); } };
      this.on('state', onClose);
    });
  }

  private advance(revision: string): void {
    if (revAfter(revision, this.revision)) this.revision = revision;
  }

  private onEvents(events: KvEvent[], revision: string, g: WatchGroup): void {
    if (this.state === 'closed') return;
    const shared = g.members.length > 1;
    for (const e of events) {
      if (shared) {
        // A range also carries keys nobody here follows (bridged prefixes): dropped. And
        // each prefix skips what its own list, later than the watch's start, already holds.
        const f = g.members.find((m) => e.key.startsWith(m.prefix));
        if (!f || !revAfter(e.modRevision, f.revision)) continue;
      }
      // Never apply an event older than what a list already gave us.
      const cur = this.currentRevision(e.key);
      if (cur !== undefined && !revAfter(e.modRevision, cur)) continue;
      if (e.type === 'put') this.applyPut(e.key, e.value ?? '', e.modRevision);
      else this.applyDelete(e.key);
    }
    for (const f of g.members) if (revAfter(revision, f.revision)) f.revision = revision;
    this.advance(revision);
  }

  /** The keys of one kind in the copy. */
  private *allKeys(kind: KeyKind): Generator<string> {
    const k = this.keys;
    switch (kind) {
      case 'services': for (const [n] of this.services) yield k.service(n); return;
      case 'hosts': for (const [n] of this.hosts) yield k.host(n); return;
      case 'drain': for (const n of this.drains) yield k.drain(n); return;
      case 'instances': for (const [, v] of this.instances) yield k.instance(v.value.service, v.value.id); return;
      case 'claims': for (const [, v] of this.claims) yield k.claim(v.value.service, v.value.instanceId); return;
      case 'sessions': for (const [n] of this.sessions) yield k.session(n); return;
      case 'slots': for (const [key] of this.slots) yield key; return;
      case 'tombstones': for (const [n] of this.tombstones) yield k.tombstone(n); return;
      case 'demand': for (const [key] of this.demand) yield key; return;
      case 'cluster': if (this.cluster) yield k.cluster(); return;
      default: return;
    }
  }

  private currentRevision(key: string): string | undefined {
    const p = this.keys.parse(key);
    if (!p) return undefined;
    switch (p.kind) {
      case 'services': return this.services.get(p.parts[0]!)?.modRevision;
      case 'hosts': return this.hosts.get(p.parts[0]!)?.modRevision;
      case 'instances': return this.instances.get(p.parts[1]!)?.modRevision;
      case 'claims': return this.claims.get(p.parts[1]!)?.modRevision;
      case 'sessions': return this.sessions.get(p.parts[0]!)?.modRevision;
      case 'slots': return this.slots.get(key)?.modRevision;
      case 'tombstones': return this.tombstones.get(p.parts[0]!)?.modRevision;
      case 'demand': return this.demand.get(key)?.modRevision;
      default: return undefined;
    }
  }

  private applyPut(key: string, raw: string, modRevision: string, lease?: string): void {
    const p = this.keys.parse(key);
    if (!p) { this.ignored.add(key); return; }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      this.opts.onError?.(new Error(`ignoring corrupt record at ${key}`, { cause: err }));
      this.ignored.add(key);
      return;
    }
    this.ignored.delete(key);
    const v = <T>(x: unknown): Versioned<T> => ({ value: x as T, modRevision, ...(lease ? { lease } : {}) });
    switch (p.kind) {
      case 'services': this.services.set(p.parts[0]!, v(value)); break;
      case 'hosts': this.hosts.set(p.parts[0]!, v(value)); break;
      case 'drain': this.drains.add(p.parts[0]!); break;
      case 'instances': this.instances.set(p.parts[1]!, v(value)); this.reindex(p.parts[1]!); break;
      case 'claims': this.claims.set(p.parts[1]!, v(value)); this.reindex(p.parts[1]!); break;
      case 'sessions': this.sessions.set(p.parts[0]!, v(value)); break;
      case 'slots': this.slots.set(key, v(value)); break;
      case 'tombstones': this.tombstones.set(p.parts[0]!, v(value)); break;
      case 'demand': this.demand.set(key, v(value)); break;
      case 'cluster': this.cluster = value as { secret: string }; break;
      case 'idempotency': return;
    }
    this.emit('change', { kind: p.kind, type: 'put', key, parts: p.parts } satisfies CacheChange);
  }

  private applyDelete(key: string): void {
    this.ignored.delete(key);
    const p = this.keys.parse(key);
    if (!p) return;
    let had = false;
    switch (p.kind) {
      case 'services': had = this.services.delete(p.parts[0]!); break;
      case 'hosts': had = this.hosts.delete(p.parts[0]!); break;
      case 'drain': had = this.drains.delete(p.parts[0]!); break;
      case 'instances': had = this.instances.delete(p.parts[1]!); this.reindex(p.parts[1]!, p.parts[0]); break;
      case 'claims': had = this.claims.delete(p.parts[1]!); this.reindex(p.parts[1]!); break;
      case 'sessions': had = this.sessions.delete(p.parts[0]!); break;
      case 'slots': had = this.slots.delete(key); break;
      case 'tombstones': had = this.tombstones.delete(p.parts[0]!); break;
      case 'demand': had = this.demand.delete(key); break;
      case 'cluster': had = this.cluster !== undefined; this.cluster = undefined; break;
      case 'idempotency': return;
    }
    if (had) this.emit('change', { kind: p.kind, type: 'delete', key, parts: p.parts } satisfies CacheChange);
  }

  /** Keeps the ready index equal to: state ready, no claim. */
  private reindex(instanceId: string, service?: string): void {
    const inst = this.instances.get(instanceId)?.value;
    const isReady = inst !== undefined && inst.state === 'ready' && !this.claims.has(instanceId);
    if (isReady) {
      if (this.ready.add(inst.service, inst.host, instanceId)) this.emit('ready', inst.service);
    } else {
      this.ready.remove(inst?.service ?? service ?? this.claims.get(instanceId)?.value.service ?? '', instanceId);
    }
  }

  /** A ready, unclaimed instance of the service on the host with most ready, skipping `exclude`. */
  pickReady(service: string, exclude?: ReadonlySet<string>): Versioned<InstanceRecord> | undefined {
    const id = this.ready.pick(service, exclude, this.opts.random);
    return id === undefined ? undefined : this.instances.get(id);
  }

  instancesOf(service: string): InstanceRecord[] {
    return [...this.instances.values()].map((v) => v.value).filter((i) => i.service === service);
  }

  async close(): Promise<void> {
    this.setState('closed');
    if (this.checkTimer) clearTimeout(this.checkTimer);
    await Promise.all(this.groups.map(async (g) => {
      const w = g.watch;
      g.watch = undefined;
      await w?.close().catch(() => undefined);
    }));
    this.removeAllListeners();
  }
}
