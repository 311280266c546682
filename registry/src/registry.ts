import type { KvOp, KvStore, KvTxnResult } from './kv.js';
import { Keys, DEFAULT_PREFIX } from './keys.js';
import { RegistryCache, type CacheOptions, type Versioned } from './cache.js';
import { LeasePool } from './lease-pool.js';
import { HostSession } from './host-session.js';
import { SessionKeeper } from './session-keeper.js';
import { newClusterSecret } from './credentials.js';
import { RegistryError } from './errors.js';
import { bootDurationMs } from './pool-view.js';
import type { ClaimRecord, ClaimResult, HostRecord, InstanceRecord, ServiceSpec, SessionRecord, TombstoneRecord } from './types.js';

/** Service changes per transaction of `applyServices` (Consul: 64 operations, 2 per put). */
export const APPLY_BATCH_SERVICES = 32;
/** Bytes of service records per transaction of `applyServices` (etcd: 1.5 MiB per request). */
export const APPLY_BATCH_BYTES = 1024 * 1024;
/**
 * The same for Consul: its transactions take 512 KiB of request body by default
 * (`txn_max_req_len`) and carry values in base64 (4/3 larger).
 */
export const APPLY_BATCH_BYTES_CONSUL = 300 * 1024;

export interface RegistryOptions {
  prefix?: string;
  now?: () => number;
  random?: () => number;
  cache?: CacheOptions;
  /** How long tombstones of ended sessions are kept (410 instead of 404; s, default 3600). */
  tombstoneRetentionSec?: number;
  /** Tombstones per lease at most (default 500): bounds what one lease expiry deletes. */
  tombstonesPerLease?: number;
  /** How often due session keep-alives are collected and sent in one batch (ms, default 1000). */
  touchFlushMs?: number;
  leasePoolSize?: number;
  /**
   * Upper bound of the random wait before a lost host lease is recovered (ms; default half
   * the host TTL, at most 5 s): spreads a fleet whose leases were lost together.
   */
  leaseRecoveryJitterMs?: number;
}

export interface ClaimRequest {
  service: string;
  sessionId: string;
  idempotencyKey?: string;
  /** Attempts against other instances when a concurrent claimer wins the race. */
  maxAttempts?: number;
  /** How long the request waited for an instance (kept in the claim: hit ratio, pool sizing). */
  waitedMs?: number;
  /**
   * Writes that go in the claim's own transaction: a router's updated demand record
   * (its queue minus this waiter), so agents see the waiter leave and its instance taken
   * at once and never boot for a waiter that is already served.
   */
  alsoWrite?: () => KvOp[];
}

export type SessionLookup =
  | { state: 'active'; session: SessionRecord }
  | { state: 'ended'; tombstone: TombstoneRecord }
  | { state: 'unknown' };

/**
 * The registry: Warmpool's only shared state, on any KvStore. Writers: `warmpool apply`
 * (services), agents (hosts, instances, slots: through HostSession), routers (claims and
 * sessions). Readers use the watch cache.
 */
export class Registry {
  readonly keys: Keys;
  readonly store: KvStore;
  private cachePromise: Promise<RegistryCache> | undefined;
  /** The cache being started or running: close() closes it even while it cannot list yet. */
  private cacheObj: RegistryCache | undefined;
  private readonly leases: LeasePool;
  private readonly keeper: SessionKeeper;
  private readonly now: () => number;
  private tombstoneLease: { id: string; grantedAt: number; used: number } | undefined;
  private tombstoneGrant: Promise<string> | undefined;
  /**
   * Instances this process is claiming right now, each with the end of that attempt:
   * concurrent claims pick different ones, and a claim that finds nothing else waits for one.
   */
  private inFlight = new Map<string, Promise<void>>();

  constructor(store: KvStore, private readonly opts: RegistryOptions = {}) {
    this.store = store;
    this.keys = new Keys(opts.prefix ?? DEFAULT_PREFIX);
    this.now = opts.now ?? Date.now;
    this.leases = new LeasePool(store, { size: opts.leasePoolSize ?? 16, now: this.now });
    this.keeper = new SessionKeeper(store, { flushMs: opts.touchFlushMs ?? 1000, now: this.now });
  }

  /** The watch cache, listed and watching (shared by every caller in this process). */
  cache(): Promise<RegistryCache> {
    if (!this.cachePromise) {
      const c = new RegistryCache(this.store, this.keys, { random: this.opts.random, ...this.opts.cache });
      this.cacheObj = c;
      this.cachePromise = c.start().then(() => c);
      this.cachePromise.catch(() => { this.cachePromise = undefined; });
    }
    return this.cachePromise;
  }

  // ---- desired state -------------------------------------------------------------

  /**
   * The claim on an instance as the store holds it now (a direct read, not the cache), or
   * undefined. Used to confirm a slot's disappearance before acting on it: the claim that
   * deletes a slot is one transaction, but a cache that watches each prefix on its own may
   * show the slot's deletion before the claim.
   */
  async claimOf(service: string, instanceId: string): Promise<ClaimRecord | undefined> {
    const e = await this.store.get(this.keys.claim(service, instanceId));
    return e ? (JSON.parse(e.value) as ClaimRecord) : undefined;
  }

  async putService(spec: ServiceSpec): Promise<void> {
    await this.store.txn([], [{ type: 'put', key: this.keys.service(spec.name), value: JSON.stringify(spec) }]);
  }

  /**
   * Writes a services file's changes (puts, then deletes) in as few transactions as the
   * store takes, each all-or-nothing: up to APPLY_BATCH_SERVICES changes and
   * APPLY_BATCH_BYTES (Consul: APPLY_BATCH_BYTES_CONSUL) of records per transaction (Consul
   * takes 64 operations, a put costing 2, and 512 KiB per request; etcd 128 operations and
   * 1.5 MiB per request by default). A usual file is applied
   * whole or not at all; a larger one batch by batch, in file order. Returns the number of
   * transactions written. Throws the store's error; batches before it stay written.
   */
  async applyServices(puts: readonly ServiceSpec[], deletes: readonly string[]): Promise<number> {
    const ops: { op: KvOp; bytes: number }[] = [
      ...puts.map((s) => { const value = JSON.stringify(s); return { op: { type: 'put', key: this.keys.service(s.name), value } as KvOp, bytes: Buffer.byteLength(value) }; }),
      ...deletes.map((name) => ({ op: { type: 'delete', key: this.keys.service(name) } as KvOp, bytes: 0 })),
    ];
    const maxBytes = this.store.backend === 'consul' ? APPLY_BATCH_BYTES_CONSUL : APPLY_BATCH_BYTES;
    let txns = 0;
    for (let i = 0; i < ops.length;) {
      const batch: KvOp[] = [];
      let bytes = 0;
      while (i < ops.length && batch.length < APPLY_BATCH_SERVICES && (batch.length === 0 || bytes + ops[i]!.bytes <= maxBytes)) {
        bytes += ops[i]!.bytes;
        batch.push(ops[i++]!.op);
      }
      await this.store.txn([], batch);
      txns++;
    }
    return txns;
  }

  async deleteService(name: string): Promise<boolean> {
    const r = await this.store.txn([{ key: this.keys.service(name), op: 'present' }], [{ type: 'delete', key: this.keys.service(name) }]);
    return r.succeeded;
  }

  async listServices(): Promise<ServiceSpec[]> {
    const { entries } = await this.store.list(this.keys.kindPrefix('services'));
    return entries.map((e) => JSON.parse(e.value) as ServiceSpec);
  }

  /** The cluster secret credentials derive from; created once by whoever asks first. */
  async clusterSecret(): Promise<string> {
    const key = this.keys.cluster();
    const cur = await this.store.get(key);
    if (cur) return (JSON.parse(cur.value) as { secret: string }).secret;
    const secret = newClusterSecret();
    const r = await this.store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: JSON.stringify({ secret }) }], [key]);
    if (r.succeeded) return secret;
    const won = r.reads?.[0];
    if (!won) throw new RegistryError('WARMPOOL_REGISTRY_CORRUPT_RECORD', 'cluster secret vanished while creating it', { retryable: true });
    return (JSON.parse(won.value) as { secret: string }).secret;
  }

  async setDrain(hostId: string, draining: boolean): Promise<void> {
    const key = this.keys.drain(hostId);
    await this.store.txn([], [draining ? { type: 'put', key, value: JSON.stringify({ draining: true, at: this.now() }) } : { type: 'delete', key }]);
  }

  // ---- hosts ---------------------------------------------------------------------

  async openHost(rec: HostRecord, ttlSec = 10): Promise<HostSession> {
    const s = new HostSession(this.store, this.keys, rec, ttlSec, {
      ...(this.opts.random ? { random: this.opts.random } : {}),
      ...(this.opts.leaseRecoveryJitterMs !== undefined ? { jitterMs: this.opts.leaseRecoveryJitterMs } : {}),
    });
    await s.open();
    return s;
  }

  // ---- sessions ------------------------------------------------------------------

  /**
   * Hands one ready, unclaimed instance to the session in one transaction: the claim
   * marker, the session record (both on the session's lease) and the removal of the
   * instance's warm slot, all or nothing. The compare on the instance's revision means a
   * claim never lands on an instance whose state changed since the cache saw it ready.
   */
  async claim(req: ClaimRequest): Promise<ClaimResult> {
    const cache = await this.cache();
    const spec = cache.services.get(req.service)?.value;
    if (!spec) return { ok: false, reason: 'unknown-service' };
    const ttl = spec.session.idleTimeoutSec;
    const tried = new Set<string>();
    const ownLeaseGone = new Set<string>();
    const attempts = req.maxAttempts ?? 8;
    const sessionKey = this.keys.session(req.sessionId);
    const idemKey = req.idempotencyKey ? this.keys.idempotency(req.service, req.idempotencyKey) : undefined;
    if (cache.tombstones.has(req.sessionId)) return { ok: false, reason: 'session-ended' };
    // The instance's current version when a txn lost only because its record changed
    // (an agent rewrote it, say after renewing its host lease) and it is still claimable.
    let fresh: Versioned<InstanceRecord> | undefined;
    // Dropped after a "lease not found": the extra writes may hang on a lease that is gone too.
    let alsoWrite = req.alsoWrite;
    for (let i = 0; i < attempts; i++) {
      let picked = fresh;
      fresh = undefined;
      if (!picked) {
        picked = cache.pickReady(req.service, new Set([...tried, ...this.inFlight.keys()]));
        if (!picked) {
          // Ready instances that only other claims of this process are trying right now:
          // one of those may lose its race; wait for it instead of reporting none ready.
          const busy = cache.pickReady(req.service, tried);
          const pending = busy && this.inFlight.get(busy.value.id);
          if (pending) { await pending; continue; }
          const existing = await this.existingClaim(req.sessionId, idemKey);
          if (existing) return existing;
          return { ok: false, reason: 'no-ready-instance' };
        }
      }
      const inst = picked.value;
      tried.add(inst.id);
      let settle!: () => void;
      this.inFlight.set(inst.id, new Promise<void>((resolve) => { settle = resolve; }));
      // The instance's pre-granted lease when its agent made one; else one from the pool.
      const pooled = !inst.sessionLease || ownLeaseGone.has(inst.id);
      try {
        const lease = pooled ? await this.leases.take(ttl) : inst.sessionLease!;
        const at = this.now();
        const session: SessionRecord = {
          id: req.sessionId, service: req.service, instanceId: inst.id, host: inst.host, address: inst.address,
          createdAt: at, expiresAt: at + spec.session.maxLifetimeSec * 1000, idleTimeoutSec: ttl, lease,
          ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
        };
        const claim: ClaimRecord = {
          sessionId: req.sessionId, service: req.service, instanceId: inst.id, claimedAt: at,
          ...(req.waitedMs !== undefined ? { waitedMs: Math.max(0, Math.round(req.waitedMs)) } : {}),
          ...(bootDurationMs(inst) !== null ? { bootMs: bootDurationMs(inst)! } : {}),
          ...(typeof inst.readyAt === 'number' ? { readyAt: inst.readyAt } : {}),
        };
        const claimKey = this.keys.claim(req.service, inst.id);
        const instKey = this.keys.instance(req.service, inst.id);
        const ops: KvOp[] = [
          { type: 'put', key: claimKey, value: JSON.stringify(claim), lease },
          { type: 'put', key: sessionKey, value: JSON.stringify(session), lease },
        ];
        if (idemKey) ops.push({ type: 'put', key: idemKey, value: JSON.stringify({ sessionId: req.sessionId }), lease });
        if (inst.slot !== null) ops.push({ type: 'delete', key: this.keys.slot(req.service, inst.slot) });
        if (alsoWrite) ops.push(...alsoWrite());
        const compares = [
          { key: instKey, op: 'modRevision' as const, equals: picked.modRevision },
          { key: claimKey, op: 'absent' as const },
          { key: sessionKey, op: 'absent' as const },
          ...(idemKey ? [{ key: idemKey, op: 'absent' as const }] : []),
        ];
        let r: KvTxnResult;
        try {
          r = await this.store.txn(compares, ops, [sessionKey, instKey, claimKey, ...(idemKey ? [idemKey] : [])]);
        } catch (err) {
          if (pooled) this.leases.giveBack(ttl, lease);
          throw err;
        }
        if (r.succeeded) return { ok: true, session, instance: inst, created: true };
        if (pooled) this.leases.giveBack(ttl, lease, at);
        // Lost the race, or this session / idempotency key already exists.
        const [sess, instNow, claimNow, idem] = r.reads ?? [];
        if (sess) return this.resultFor(JSON.parse(sess.value) as SessionRecord);
        if (idem) {
          const existing = await this.existingClaim(req.sessionId, idemKey);
          if (existing) return existing;
        }
        // Only the record changed, and the instance is still ready and unclaimed: try its
        // current version next (the compare keeps this safe), not a stale cache entry.
        if (instNow && !claimNow && instNow.modRevision !== picked.modRevision) {
          const now = JSON.parse(instNow.value) as InstanceRecord;
          if (now.state === 'ready') fresh = { value: now, modRevision: instNow.modRevision };
        }
      } catch (err) {
        // The instance's own lease expired (its agent stopped refreshing it): retry this
        // instance with a pooled lease on the next attempt.
        if (isLeaseNotFound(err) && alsoWrite) {
          alsoWrite = undefined;
          tried.delete(inst.id);
          continue;
        }
        if (!pooled && isLeaseNotFound(err)) {
          tried.delete(inst.id);
          ownLeaseGone.add(inst.id);
          continue;
        }
        throw err;
      } finally {
        this.inFlight.delete(inst.id);
        settle();
        if (pooled) this.leases.replenish(ttl);
      }
    }
    return { ok: false, reason: 'no-ready-instance' };
  }

  private async existingClaim(sessionId: string, idemKey: string | undefined): Promise<ClaimResult | undefined> {
    const sess = await this.store.get(this.keys.session(sessionId));
    if (sess) return this.resultFor(JSON.parse(sess.value) as SessionRecord);
    if (idemKey) {
      const idem = await this.store.get(idemKey);
      if (idem) {
        const { sessionId: other } = JSON.parse(idem.value) as { sessionId: string };
        const s = await this.store.get(this.keys.session(other));
        if (s) return this.resultFor(JSON.parse(s.value) as SessionRecord);
      }
    }
    return undefined;
  }

  private async resultFor(session: SessionRecord): Promise<ClaimResult> {
    const cache = await this.cache();
    const inst = cache.instances.get(session.instanceId)?.value ?? instanceFromSession(session);
    return { ok: true, session, instance: inst, created: false };
  }

  /**
   * A session by id: from the cache, else from the store (another router may have created
   * it a moment ago). A session past its max lifetime is ended here.
   */
  async lookupSession(id: string): Promise<SessionLookup> {
    const cache = await this.cache();
    let session = cache.sessions.get(id)?.value;
    if (!session) {
      const tomb = cache.tombstones.get(id)?.value;
      if (tomb) return { state: 'ended', tombstone: tomb };
      const e = await this.store.get(this.keys.session(id));
      if (e) session = JSON.parse(e.value) as SessionRecord;
      else {
        const t = await this.store.get(this.keys.tombstone(id));
        return t ? { state: 'ended', tombstone: JSON.parse(t.value) as TombstoneRecord } : { state: 'unknown' };
      }
    }
    if (session.expiresAt <= this.now()) {
      await this.endSession(id, 'expired');
      return { state: 'ended', tombstone: { sessionId: id, service: session.service, instanceId: session.instanceId, reason: 'expired', endedAt: this.now() } };
    }
    return { state: 'active', session };
  }

  /**
   * Records traffic on a session. Its lease is refreshed at most 3 times per idle timeout
   * (see SessionKeeper), in batches: no etcd call per request.
   */
  touch(session: SessionRecord): void {
    this.keeper.touch(session.lease, session.idleTimeoutSec, session.createdAt);
  }

  /** Session keep-alives this process has sent (the fleet-scale figures count them). */
  get keepAlivesSent(): number {
    return this.keeper.sent;
  }

  /**
   * Ends a session: session and idempotency keys go, the claim is marked ended and a
   * tombstone stays, in one transaction; then the session's lease is revoked. False if it
   * was not active.
   */
  async endSession(id: string, reason: TombstoneRecord['reason']): Promise<boolean> {
    const key = this.keys.session(id);
    const cur = await this.store.get(key);
    if (!cur) return false;
    const s = JSON.parse(cur.value) as SessionRecord;
    const held = this.cacheObj?.claims.get(s.instanceId)?.value;
    // Pool-sizing history the ended claim and the tombstone keep (docs/pool-sizing.md).
    const history = {
      ...(held?.waitedMs !== undefined ? { waitedMs: held.waitedMs } : {}),
      ...(held?.bootMs !== undefined ? { bootMs: held.bootMs } : {}),
      ...(held?.readyAt !== undefined ? { readyAt: held.readyAt } : {}),
    };
    const tomb: TombstoneRecord = {
      sessionId: id, service: s.service, instanceId: s.instanceId, reason, endedAt: this.now(), claimedAt: s.createdAt, ...history,
    };
    const tombLease = await this.tombstoneLeaseId();
    // The claim is not deleted but marked ended: an instance serves one session, and a
    // missing claim key would make it look claimable until its agent catches up.
    const ended: ClaimRecord = {
      sessionId: id, service: s.service, instanceId: s.instanceId, claimedAt: s.createdAt, ended: true, endedAt: tomb.endedAt, ...history,
    };
    const ops: KvOp[] = [
      { type: 'delete', key },
      { type: 'put', key: this.keys.claim(s.service, s.instanceId), value: JSON.stringify(ended), lease: tombLease },
      { type: 'put', key: this.keys.tombstone(id), value: JSON.stringify(tomb), lease: tombLease },
    ];
    if (s.idempotencyKey) ops.push({ type: 'delete', key: this.keys.idempotency(s.service, s.idempotencyKey) });
    const r = await this.store.txn([{ key, op: 'modRevision', equals: cur.modRevision }], ops);
    if (r.succeeded) await this.store.revokeLease(s.lease).catch(() => undefined);
    return r.succeeded;
  }

  /**
   * Writes a tombstone for a session whose lease ran out (nobody ended it explicitly), if
   * none exists yet. Agents call this when a claim on their instance disappears.
   */
  async recordExpired(tomb: TombstoneRecord): Promise<void> {
    const key = this.keys.tombstone(tomb.sessionId);
    await this.store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: JSON.stringify(tomb), lease: await this.tombstoneLeaseId() }]);
  }

  /**
   * Tombstones (and ended claims) go on leases that are not kept alive, so they vanish
   * after the retention with no sweeper. A lease takes at most `tombstonesPerLease`
   * (default 500) and is used for at most 1/16 of the retention: each tombstone lives between
   * 15/16 and all of the retention, and no single expiry deletes more than a few hundred
   * keys (one expiry is one watch response: 80,000 tombstones on one lease made a 5 MB
   * response, over gRPC's default limit, and every router re-listed).
   */
  private async tombstoneLeaseId(): Promise<string> {
    const retention = this.opts.tombstoneRetentionSec ?? 3600;
    const perLease = this.opts.tombstonesPerLease ?? 500;
    const t = this.tombstoneLease;
    if (t && t.used < perLease && this.now() - t.grantedAt < (retention * 1000) / 16) {
      t.used++;
      return t.id;
    }
    const granting = this.tombstoneGrant ?? this.store.grantLease(retention).then((id) => {
      this.tombstoneLease = { id, grantedAt: this.now(), used: 0 };
      return id;
    }).finally(() => { this.tombstoneGrant = undefined; });
    this.tombstoneGrant = granting;
    await granting;
    return this.tombstoneLeaseId();
  }

  async close(): Promise<void> {
    await this.keeper.close();
    await this.leases.close();
    // Not `await this.cachePromise` first: with the registry unreachable the cache keeps
    // retrying its first list, and closing would wait for it forever.
    const c = this.cacheObj;
    this.cacheObj = undefined;
    await c?.close();
    await this.cachePromise?.catch(() => undefined);
  }
}

function isLeaseNotFound(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: { message?: string } };
  return e?.code === 'WARMPOOL_LEASE_LOST' || /lease not found/i.test(`${e?.message ?? ''} ${e?.cause?.message ?? ''}`);
}

/** The instance a session points at, when the instance record itself is gone (agent restart). */
export function instanceFromSession(s: SessionRecord): InstanceRecord {
  return {
    id: s.instanceId, service: s.service, host: s.host, state: 'claimed', address: s.address, containerId: '',
    slot: null, createdAt: s.createdAt, readyAt: null, bootMs: null,
  };
}
