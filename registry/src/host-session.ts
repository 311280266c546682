import { EventEmitter } from 'node:events';
import type { KvOp, KvStore, LeaseHandle } from './kv.js';
import type { Keys } from './keys.js';
import type { HostRecord, InstanceRecord, SlotRecord } from './types.js';

/** Puts per transaction when records are put back after a lost lease. */
const PUTS_PER_TXN = 64;
/** Lease recoveries that may start per second in one process (simulated hosts share one). */
const RECOVERIES_PER_SEC = 20;
let nextRecoveryAt = 0;

/** How long the next recovery of this process waits for its turn (ms); reserves that turn. */
function paceRecovery(): number {
  const now = Date.now();
  const at = Math.max(now, nextRecoveryAt);
  nextRecoveryAt = at + 1000 / RECOVERIES_PER_SEC;
  return at - now;
}

/**
 * Everything one agent writes on its host lease: the host record, its instances and the
 * warm slots they hold. If the lease is lost (an etcd partition longer than its TTL), the
 * session grants a new lease and puts every record again; a slot someone else took in the
 * meantime is reported through 'slot-lost' so the agent can retire the surplus instance.
 *
 * Events: 'lost' (reason), 'restored', 'slot-lost' (service, slot, instanceId), 'error'.
 */
export class HostSession extends EventEmitter {
  private lease: LeaseHandle | undefined;
  private records = new Map<string, string>();
  private slotsHeld = new Map<string, SlotRecord>();
  /** Session leases of ready, unclaimed instances, kept alive by this host until claimed. */
  private sessionLeases = new Map<string, { id: string; ttlSec: number }>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private recovering: Promise<void> | undefined;
  /** recover() was asked for while a recovery ran (e.g. the new lease was lost too): run again after it. */
  private recoverAgain = false;
  private readonly pauses = new Set<() => void>();

  constructor(
    private readonly store: KvStore,
    private readonly keys: Keys,
    private host: HostRecord,
    readonly ttlSec: number,
    private readonly recovery: { random?: () => number; jitterMs?: number } = {},
  ) {
    super();
  }

  get leaseId(): string | undefined { return this.lease?.id; }

  async open(): Promise<void> {
    await this.grant();
    await this.putHost(this.host);
  }

  private async grant(): Promise<void> {
    this.attach(await this.store.grantKeptLease(this.ttlSec));
  }

  private attach(lease: LeaseHandle): void {
    // A lease replaced while still alive (recover() asked twice) stops being kept: the
    // records move to the new one right after.
    if (this.lease !== lease) this.lease?.release();
    this.lease = lease;
    lease.onLost((reason) => {
      if (this.closed || this.lease !== lease) return;
      this.emit('lost', reason);
      void this.recover();
    });
  }

  /** Re-grants and re-puts until it works; exposed for tests and for the agent's resync. */
  recover(): Promise<void> {
    if (this.recovering) {
      // A loss during a recovery (the lease it just granted expired already, say while
      // etcd was still settling) must not be swallowed: go again once this one ends.
      this.recoverAgain = true;
      return this.recovering;
    }
    this.recoverAgain = false;
    this.recovering = (async () => {
      // The lease may still be alive (declared lost because etcd answered late): if so,
      // keep it, and every record on it stays where it is; nothing to write. Asked at once
      // (a keep-alive is cheap, and it keeps the lease alive meanwhile), then every third of
      // the TTL while etcd does not answer.
      const old = this.lease;
      if (old && this.store.resumeLease) {
        let delay = 200;
        while (!this.closed) {
          try {
            const resumed = await this.store.resumeLease(old.id, this.ttlSec);
            if (resumed && !this.closed) {
              this.attach(resumed);
              this.emit('restored');
              return;
            }
            break; // gone: grant a new one
          } catch (err) {
            if (this.listenerCount('error') > 0) this.emit('error', err);
            await this.pause(delay * (0.5 + this.random()));
            delay = Math.min(delay * 2, (this.ttlSec * 1000) / 3);
          }
        }
      }
      // Gone: spread a fleet that lost its leases together (etcd paused or partitioned).
      // Each host waits a random part of its TTL, and the hosts of one process start at most
      // RECOVERIES_PER_SEC recoveries a second between them.
      await this.pause(this.random() * (this.recovery.jitterMs ?? Math.min(this.ttlSec * 500, 5_000)) + paceRecovery());
      let delay = 500;
      while (!this.closed) {
        try {
          await this.grant();
          const leaseId = this.lease!.id;
          // Slots first: an instance record must never name a slot its host no longer
          // holds, or a claim on it would delete another host's slot.
          const lostSlots = new Map<string, SlotRecord>();
          const consumed = new Set<string>();
          for (const [key, slot] of [...this.slotsHeld]) {
            // A claim may have consumed the slot while the lease was gone: never put back a
            // slot for a claimed instance.
            const claimKey = this.keys.claim(slot.service, slot.instanceId);
            const r = await this.store.txn(
              [{ key, op: 'absent' }, { key: claimKey, op: 'absent' }],
              [{ type: 'put', key, value: JSON.stringify(slot), lease: leaseId }],
              [key, claimKey],
            );
            if (r.succeeded) continue;
            const [cur, claim] = r.reads ?? [];
            if (claim) {
              // Consumed by a claim: the instance serves a session now, it is not surplus.
              this.slotsHeld.delete(key);
              consumed.add(slot.instanceId);
              continue;
            }
            const holder = cur ? (JSON.parse(cur.value) as SlotRecord) : undefined;
            if (holder?.instanceId === slot.instanceId) {
              // Still ours (the old lease had not expired yet): move it to the new lease.
              await this.store.txn([{ key, op: 'modRevision', equals: cur!.modRevision }], [{ type: 'put', key, value: JSON.stringify(slot), lease: leaseId }]);
              continue;
            }
            this.slotsHeld.delete(key);
            lostSlots.set(slot.instanceId, slot);
          }
          for (const [key, value] of this.records) {
            const rec = this.keys.parse(key)?.kind === 'instances' ? (JSON.parse(value) as InstanceRecord) : undefined;
            if (rec && rec.slot !== null && (lostSlots.has(rec.id) || consumed.has(rec.id))) {
              this.records.set(key, JSON.stringify({ ...rec, slot: null }));
            }
          }
          // The records in transactions of up to PUTS_PER_TXN puts (etcd's --max-txn-ops is
          // 128 by default): a host with 100 instances costs 2 writes, not 101. The map is read
          // again for each batch: a record deleted meanwhile must not come back.
          const keys = [...this.records.keys()];
          for (let i = 0; i < keys.length; i += PUTS_PER_TXN) {
            const ops: KvOp[] = [];
            for (const key of keys.slice(i, i + PUTS_PER_TXN)) {
              const value = this.records.get(key);
              if (value !== undefined) ops.push({ type: 'put', key, value, lease: leaseId });
            }
            if (ops.length) await this.store.txn([], ops);
          }
          for (const slot of lostSlots.values()) this.emit('slot-lost', slot.service, slot.slot, slot.instanceId);
          this.emit('restored');
          return;
        } catch (err) {
          if (this.listenerCount('error') > 0) this.emit('error', err);
          // A slow or absent etcd is given room: doubling, jittered delays up to 10 s.
          await this.pause(delay * (0.5 + this.random()));
          delay = Math.min(delay * 2, 10_000);
        }
      }
    })().finally(() => {
      this.recovering = undefined;
      if (this.recoverAgain && !this.closed) void this.recover();
    });
    return this.recovering;
  }

  private random(): number {
    return (this.recovery.random ?? Math.random)();
  }

  /** Waits `ms`; close() ends the wait at once. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.pauses.delete(end); resolve(); }, ms);
      const end = (): void => { clearTimeout(timer); resolve(); };
      this.pauses.add(end);
    });
  }

  private async put(key: string, value: string): Promise<void> {
    this.records.set(key, value);
    await this.store.txn([], [{ type: 'put', key, value, lease: this.lease!.id }]);
  }

  async putHost(rec: HostRecord): Promise<void> {
    this.host = rec;
    await this.put(this.keys.host(rec.id), JSON.stringify(rec));
  }

  /**
   * Puts an instance record. With `sessionLeaseTtlSec` and state ready, the instance gets a
   * pre-granted session lease (see InstanceRecord.sessionLease) kept alive until
   * `instanceClaimed` or `deleteInstance`.
   */
  async putInstance(rec: InstanceRecord, opts: { sessionLeaseTtlSec?: number } = {}): Promise<InstanceRecord> {
    let out = rec;
    if (rec.state === 'ready' && opts.sessionLeaseTtlSec && !rec.sessionLease) {
      let held = this.sessionLeases.get(rec.id);
      if (!held) {
        held = { id: await this.store.grantLease(opts.sessionLeaseTtlSec), ttlSec: opts.sessionLeaseTtlSec };
        this.sessionLeases.set(rec.id, held);
        this.scheduleLeaseKeepAlive();
      }
      out = { ...rec, sessionLease: held.id };
    }
    await this.put(this.keys.instance(out.service, out.id), JSON.stringify(out));
    return out;
  }

  /**
   * Puts an instance record only while `claimKey` is absent, in one transaction (the
   * agent retiring an instance it believes unclaimed). Returns false, writing nothing, when
   * a claim exists. The record goes on the host lease, like putInstance's.
   */
  async putInstanceUnlessClaimed(rec: InstanceRecord, claimKey: string): Promise<boolean> {
    const key = this.keys.instance(rec.service, rec.id);
    const value = JSON.stringify(rec);
    const r = await this.store.txn([{ key: claimKey, op: 'absent' }], [{ type: 'put', key, value, lease: this.lease!.id }]);
    if (r.succeeded) this.records.set(key, value);
    return r.succeeded;
  }

  /** The instance was claimed: its session lease now belongs to the session (routers refresh it). */
  instanceClaimed(instanceId: string): void {
    this.sessionLeases.delete(instanceId);
  }

  private scheduleLeaseKeepAlive(): void {
    if (this.leaseTimer || this.closed) return;
    const tick = async (): Promise<void> => {
      this.leaseTimer = undefined;
      if (this.closed || this.sessionLeases.size === 0) return;
      const byId = new Map([...this.sessionLeases].map(([inst, l]) => [l.id, inst]));
      try {
        const ttls = await this.store.keepAlive([...byId.keys()]);
        for (const [id, ttl] of ttls) {
          const inst = byId.get(id);
          // Gone (expired during an outage): the next putInstance grants a fresh one.
          if (ttl <= 0 && inst !== undefined) this.sessionLeases.delete(inst);
        }
      } catch (err) {
        if (this.listenerCount('error') > 0) this.emit('error', err);
      }
      this.scheduleLeaseKeepAlive();
    };
    const minTtl = Math.min(...[...this.sessionLeases.values()].map((l) => l.ttlSec));
    this.leaseTimer = setTimeout(() => void tick(), Math.max(200, (minTtl * 1000) / 3));
    this.leaseTimer.unref();
  }

  async deleteInstance(service: string, id: string): Promise<void> {
    const key = this.keys.instance(service, id);
    this.records.delete(key);
    const ops = [{ type: 'delete' as const, key }];
    for (const [k, s] of this.slotsHeld) {
      if (s.instanceId === id) { this.slotsHeld.delete(k); ops.push({ type: 'delete', key: k }); }
    }
    await this.store.txn([], ops);
    const lease = this.sessionLeases.get(id);
    if (lease) {
      this.sessionLeases.delete(id);
      await this.store.revokeLease(lease.id).catch(() => undefined);
    }
  }

  /** Takes warm slot n of a service for an instance; false when another agent holds it. */
  async takeSlot(service: string, n: number, instanceId: string): Promise<boolean> {
    const key = this.keys.slot(service, n);
    const slot: SlotRecord = { service, slot: n, instanceId, host: this.host.id };
    const r = await this.store.txn([{ key, op: 'absent' }], [{ type: 'put', key, value: JSON.stringify(slot), lease: this.lease!.id }]);
    if (r.succeeded) this.slotsHeld.set(key, slot);
    return r.succeeded;
  }

  /**
   * Re-takes a slot an instance of this host held under an earlier lease (the agent
   * restarted and adopts its containers): puts it on the current lease if it is absent or
   * still names that instance. False when another instance holds it now.
   */
  async adoptSlot(service: string, n: number, instanceId: string): Promise<boolean> {
    const key = this.keys.slot(service, n);
    const slot: SlotRecord = { service, slot: n, instanceId, host: this.host.id };
    const cur = await this.store.get(key);
    if (cur && (JSON.parse(cur.value) as SlotRecord).instanceId !== instanceId) return false;
    const compare = cur ? { key, op: 'modRevision' as const, equals: cur.modRevision } : { key, op: 'absent' as const };
    const r = await this.store.txn([compare], [{ type: 'put', key, value: JSON.stringify(slot), lease: this.lease!.id }]);
    if (r.succeeded) this.slotsHeld.set(key, slot);
    return r.succeeded;
  }

  /** Frees a slot this host holds, only if it still holds it. */
  async releaseSlot(service: string, n: number, instanceId: string): Promise<void> {
    const key = this.keys.slot(service, n);
    const held = this.slotsHeld.get(key);
    if (!held || held.instanceId !== instanceId) return;
    this.slotsHeld.delete(key);
    const cur = await this.store.get(key);
    if (!cur) return;
    const holder = JSON.parse(cur.value) as SlotRecord;
    if (holder.instanceId !== instanceId) return;
    await this.store.txn([{ key, op: 'modRevision', equals: cur.modRevision }], [{ type: 'delete', key }]);
  }

  /** Forgets a slot that a claim consumed (the claim transaction deleted its key). */
  forgetSlot(service: string, n: number): void {
    this.slotsHeld.delete(this.keys.slot(service, n));
  }

  heldSlots(): SlotRecord[] {
    return [...this.slotsHeld.values()];
  }

  /**
   * Graceful stop. revoke=true removes the host and its instances from the registry at
   * once (the agent is going away for good); false leaves them to the TTL, so an agent
   * restart adopts them without routers ever seeing them vanish.
   */
  async close(opts: { revoke: boolean }): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    for (const end of this.pauses) end();
    this.pauses.clear();
    if (opts.revoke) {
      await Promise.all([...this.sessionLeases.values()].map((l) => this.store.revokeLease(l.id).catch(() => undefined)));
    }
    if (opts.revoke) await this.lease?.revoke().catch(() => undefined);
    else this.lease?.release();
  }
}
