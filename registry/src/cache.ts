import { EventEmitter } from 'node:events';
import type { KvEntry, KvEvent, KvStore, KvWatch } from './kv.js';
import type { Keys} from './keys.js';
import { type KeyKind } from './keys.js';
import type { ClaimRecord, DemandRecord, HostRecord, InstanceRecord, ServiceSpec, SessionRecord, SlotRecord, TombstoneRecord } from './types.js';
import { ReadyIndex } from './ready-index.js';

export interface Versioned<T> { value: T; modRevision: string; lease?: string }

export interface CacheChange {
  kind: KeyKind;
  type: 'put' | 'delete';
  key: string;
  parts: string[];
}

export type CacheState = 'idle' | 'syncing' | 'live' | 'closed';

export interface CacheOptions {
  /** Full re-list interval; watch events are hints, the re-list is the truth. */
  resyncMs?: number;
  random?: () => number;
  onError?: (err: unknown) => void;
}

/**
 * A watch-fed copy of the whole registry prefix. Lists, then watches from the listed
 * revision; a reset (compaction, restarted store) or the periodic resync re-lists and
 * applies only the differences, so no event is lost or applied twice.
 *
 * Events: 'change' (CacheChange) per applied key change, 'ready' (service) when an instance
 * joins a ready set, 'synced' after each full list, 'state' (CacheState). The link to the
 * store: `disconnectedSince`.
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
  revision = '0';
  state: CacheState = 'idle';
  /**
   * When the watch lost its link to the store (ms since epoch), else null. The copy is
   * kept meanwhile (it may lag behind the store) and re-listed once the link is back.
   */
  disconnectedSince: number | null = null;
  /** When the last full list completed (ms since epoch); null before the first one. */
  syncedAt: number | null = null;
  private watch: KvWatch | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  private readonly opts: Required<Omit<CacheOptions, 'onError'>> & Pick<CacheOptions, 'onError'>;

  constructor(private readonly store: KvStore, keys: Keys, opts: CacheOptions = {}) {
    super();
    this.keys = keys;
    this.opts = { resyncMs: opts.resyncMs ?? 60_000, random: opts.random ?? Math.random, onError: opts.onError };
  }

  async start(): Promise<void> {
    await this.resync();
    this.scheduleResync();
  }

  private closed(): boolean {
    return this.state === 'closed';
  }

  private setState(s: CacheState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  private setConnected(connected: boolean): void {
    if (connected === (this.disconnectedSince === null)) return;
    this.disconnectedSince = connected ? null : Date.now();
  }

  private scheduleResync(): void {
    if (this.state === 'closed') return;
    const jitter = 0.8 + this.opts.random() * 0.4;
    this.resyncTimer = setTimeout(() => {
      this.resync().catch((err) => this.opts.onError?.(err)).finally(() => this.scheduleResync());
    }, this.opts.resyncMs * jitter);
    this.resyncTimer.unref();
  }

  /** Re-lists the prefix, applies the differences and restarts the watch after that revision. */
  resync(): Promise<void> {
    if (this.resyncing) return this.resyncing;
    this.resyncing = this.doResync().finally(() => { this.resyncing = undefined; });
    return this.resyncing;
  }

  private async doResync(): Promise<void> {
    if (this.closed()) return;
    this.setState('syncing');
    const old = this.watch;
    this.watch = undefined;
    await old?.close().catch(() => undefined);
    // Retry the list with backoff until it works or the cache is closed.
    let delay = 100;
    let listed: { revision: string; entries: KvEntry[] } | undefined;
    while (!listed) {
      if (this.closed()) return;
      try {
        listed = await this.store.list(this.keys.prefix);
        this.setConnected(true);
      } catch (err) {
        this.setConnected(false);
        this.opts.onError?.(err);
        await new Promise<void>((r) => {
          // close() ends the wait at once.
          const timer = setTimeout(() => { this.off('state', onClose); r(); }, delay);
          const onClose = (s: CacheState): void => { if (s === 'closed') { clearTimeout(timer); r(); } };
          this.on('state', onClose);
        });
        delay = Math.min(delay * 2, 5_000);
      }
    }
    if (this.closed()) return;
    const seen = new Set<string>();
    for (const e of listed.entries) {
      seen.add(e.key);
      if (this.currentRevision(e.key) !== e.modRevision) this.applyPut(e.key, e.value, e.modRevision, e.lease);
    }
    for (const key of this.allKeys()) if (!seen.has(key)) this.applyDelete(key);
    this.revision = listed.revision;
    this.syncedAt = Date.now();
    this.emit('synced');
    try {
      this.watch = await this.store.watch(this.keys.prefix, this.revision, {
        onEvents: (events, revision) => this.onEvents(events, revision),
        onReset: () => { void this.resync(); },
        onConnectionChange: (connected) => {
          this.setConnected(connected);
          if (connected) void this.resync();
        },
      });
      if (this.closed()) { await this.watch.close(); return; }
      this.setState('live');
    } catch (err) {
      this.opts.onError?.(err);
      setTimeout(() => void this.resync(), delay).unref();
    }
  }

  private onEvents(events: KvEvent[], revision: string): void {
    if (this.state === 'closed') return;
    for (const e of events) {
      // Never apply an event older than what a list already gave us.
      const cur = this.currentRevision(e.key);
      if (cur !== undefined && BigInt(cur) >= BigInt(e.modRevision)) continue;
      if (e.type === 'put') this.applyPut(e.key, e.value ?? '', e.modRevision);
      else this.applyDelete(e.key);
    }
    if (BigInt(revision) > BigInt(this.revision)) this.revision = revision;
  }

  private *allKeys(): Generator<string> {
    const k = this.keys;
    for (const [n] of this.services) yield k.service(n);
    for (const [n] of this.hosts) yield k.host(n);
    for (const n of this.drains) yield k.drain(n);
    for (const [, v] of this.instances) yield k.instance(v.value.service, v.value.id);
    for (const [, v] of this.claims) yield k.claim(v.value.service, v.value.instanceId);
    for (const [n] of this.sessions) yield k.session(n);
    for (const [key] of this.slots) yield key;
    for (const [n] of this.tombstones) yield k.tombstone(n);
    for (const [key] of this.demand) yield key;
    if (this.cluster) yield k.cluster();
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
    if (!p) return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      this.opts.onError?.(new Error(`ignoring corrupt record at ${key}`, { cause: err }));
      return;
    }
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
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    await this.watch?.close().catch(() => undefined);
    this.watch = undefined;
    this.removeAllListeners();
  }
}
