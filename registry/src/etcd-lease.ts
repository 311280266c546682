/**
 * etcd leases for EtcdKvStore: the kept lease handle and the batched one-shot keep-alive.
 * Private helpers of etcd-kv.ts.
 */
import type { Etcd3 } from 'etcd3';
import type { LeaseHandle } from './kv.js';
import { mapEtcdError } from './etcd-errors.js';
import { RegistryError, unavailable } from './errors.js';
import { LostSignal } from './lost-signal.js';

type KeptState = 'alive' | 'lost' | 'revoked' | 'released';

/**
 * A lease kept alive by the store's KeptLeaseLoop, with a watchdog: it is declared lost once
 * no keep-alive sent in the last TTL was acknowledged (etcd may expire it after 1 x TTL), so
 * its owner never believes in a lease etcd has already dropped; or at once when etcd answers
 * that it is gone.
 */
export class EtcdKeptLease implements LeaseHandle {
  state: KeptState = 'alive';
  private readonly lost = new LostSignal();
  /** When the last acknowledged keep-alive (or the grant) was sent, ms: the lease lives until at least this + TTL. */
  ackedSentAt: number;
  /** When the last keep-alive was sent, ms. */
  sentAt: number;

  constructor(
    private readonly client: Etcd3,
    readonly id: string,
    readonly ttlSec: number,
    /** When the grant (or the keep-alive that proved the lease alive) was sent. */
    since: number,
    private readonly onDone: (l: EtcdKeptLease) => void,
  ) {
    this.ackedSentAt = since;
    this.sentAt = since;
  }

  onLost(listener: (reason: string) => void): void {
    this.lost.on(listener);
  }

  async revoke(): Promise<void> {
    if (this.state === 'revoked') return;
    this.stop('revoked');
    try {
      await this.client.leaseClient.leaseRevoke({ ID: this.id });
    } catch (err) {
      const mapped = mapEtcdError(err, `revoke lease ${this.id}`);
      if (mapped.code !== 'WARMPOOL_LEASE_LOST') throw mapped;
    }
  }

  release(): void {
    if (this.state === 'alive') this.stop('released');
  }

  private stop(state: KeptState): void {
    this.state = state;
    this.onDone(this);
  }

  markLost(reason: string): void {
    if (this.state !== 'alive') return;
    this.stop('lost');
    this.lost.fire(reason);
  }
}

/**
 * Keeps every kept lease of one client alive: a lease is refreshed a third of its TTL after
 * its previous keep-alive was sent, and all leases due at one tick share one keep-alive
 * round (one stream, one round trip), so a process holding hundreds of host leases costs
 * one stream per tick, not a stream per lease. A round still unanswered holds the next one
 * back: a slow etcd receives fewer keep-alives, never a pile of them.
 */
export class KeptLeaseLoop {
  private readonly leases = new Set<EtcdKeptLease>();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  /** Leases whose owner asks whether they are still alive, answered at the next tick together. */
  private probes = new Map<string, ((ttl: number | undefined) => void)[]>();
  /** Keep-alives sent (one per lease per round, probes included). */
  sent = 0;

  constructor(private readonly client: Etcd3, private readonly timeoutMs: number, private readonly tickMs = 250) {}

  add(l: EtcdKeptLease): void {
    this.leases.add(l);
    this.ensureTimer();
  }

  delete(l: EtcdKeptLease): void {
    this.leases.delete(l);
  }

  /**
   * One keep-alive for a lease no handle keeps (declared lost): its remaining TTL (s), 0 when
   * it is gone, undefined when etcd did not answer in time. Probes asked within one tick
   * share one round.
   */
  probe(id: string): Promise<number | undefined> {
    return new Promise((resolve) => {
      const waiting = this.probes.get(id) ?? [];
      waiting.push(resolve);
      this.probes.set(id, waiting);
      this.ensureTimer();
    });
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  private sendProbes(): void {
    if (this.probes.size === 0) return;
    const probes = this.probes;
    this.probes = new Map();
    this.sent += probes.size;
    const answer = (ttls: Map<string, number> | undefined): void => {
      for (const [id, fns] of probes) for (const fn of fns) fn(ttls?.get(id));
    };
    keepAliveBatch(this.client, [...probes.keys()], this.timeoutMs, 1, true).then(answer, () => answer(undefined));
  }

  private tick(): void {
    const now = Date.now();
    this.sendProbes();
    if (this.leases.size === 0 && this.probes.size === 0 && this.timer) { clearInterval(this.timer); this.timer = undefined; }
    for (const l of [...this.leases]) {
      const silentMs = now - l.ackedSentAt;
      if (silentMs > l.ttlSec * 1000) {
        l.markLost(`no keep-alive for etcd lease ${l.id} was acknowledged for ${Math.round(silentMs / 1000)} s (TTL ${l.ttlSec} s): it may have expired`);
      }
    }
    if (this.round) return;
    const due = [...this.leases].filter((l) => now - l.sentAt >= (l.ttlSec * 1000) / 3);
    if (due.length === 0) return;
    for (const l of due) l.sentAt = now;
    this.sent += due.length;
    const byId = new Map(due.map((l) => [l.id, l]));
    // An answer is worth waiting for up to 2/3 of the shortest TTL (a slow etcd still renews
    // the lease when the request arrives); the next round waits for this one.
    const timeout = Math.min(this.timeoutMs, Math.max(500, (Math.min(...due.map((l) => l.ttlSec * 1000)) * 2) / 3));
    this.round = keepAliveBatch(this.client, [...byId.keys()], timeout, 1, true)
      .then((ttls) => {
        for (const [id, l] of byId) {
          const ttl = ttls.get(id);
          if (ttl === undefined) l.sentAt = now - (l.ttlSec * 1000) / 6; // unanswered: again soon
          else if (ttl > 0) l.ackedSentAt = Math.max(l.ackedSentAt, now);
          else l.markLost(`etcd lease ${id} expired (a keep-alive found it gone)`);
        }
      })
      .catch(() => {
        // Unanswered: tried again a sixth of a TTL later (not at the next tick: a failing
        // etcd is not hammered); the watchdog above decides when they may have expired.
        for (const l of due) l.sentAt = now - (l.ttlSec * 1000) / 6;
      })
      .finally(() => { this.round = undefined; });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.leases.clear();
    for (const fns of this.probes.values()) for (const fn of fns) fn(undefined);
    this.probes.clear();
  }
}

/** Retries of a one-shot keep-alive that follow a failed stream at once (see keepAliveBatch). */
const QUICK_RETRIES = 8;

/**
 * One keep-alive for each lease id over a single bidirectional LeaseKeepAlive stream: all
 * requests are written at once and the responses collected by id, so hundreds of leases
 * cost one stream and one round trip. TTL <= 0 in a response means the lease is gone.
 * A stream that fails (a dead member: etcd3 does not retry streams) is retried on another
 * member for the ids still unanswered; keep-alives are idempotent. etcd3 picks each stream's
 * member at random and opens a member's circuit only after several failures, so a dead member
 * of three can be picked several times running: the retries go on until `attempts` or the
 * deadline, whichever comes first (32 by default). The first QUICK_RETRIES follow at once (a
 * dead member refuses in about a millisecond, and each failure brings its circuit closer to
 * open); later ones wait 50 ms more each time, up to 250 ms. With 16 attempts paced from the
 * first, a keep-alive with 2 dead members of 3 failed in CI (one in 20 of a fault test; were
 * every pick independent, one in about 650: (2/3)^16). With `partial`,
 * ids left unanswered at the deadline are simply absent from the result (unless none was
 * answered).
 */
export async function keepAliveBatch(
  client: Etcd3, leaseIds: string[], timeoutMs: number, attempts = 32, partial = false,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const pending = new Set<string>();
  for (const id of leaseIds) {
    if (/^\d+$/.test(id)) pending.add(id);
    else out.set(id, 0); // not an etcd lease id: it cannot exist
  }
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (let i = 0; i < attempts && pending.size > 0 && Date.now() < deadline; i++) {
    if (i > QUICK_RETRIES) await new Promise((r) => setTimeout(r, Math.min(50 * (i - QUICK_RETRIES), 250, Math.max(0, deadline - Date.now()))));
    lastErr = await keepAliveRound(client, pending, out, deadline);
  }
  if (pending.size > 0 && !(partial && out.size > 0)) {
    throw lastErr ?? unavailable(new Error(`lease keep-alive: ${pending.size} of ${leaseIds.length} answers missing after ${timeoutMs} ms`));
  }
  return out;
}

/** One stream: moves answered ids from `pending` to `out`; resolves with the error that ended it, if any. */
async function keepAliveRound(client: Etcd3, pending: Set<string>, out: Map<string, number>, deadline: number): Promise<unknown> {
  let stream: Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>>;
  try {
    stream = await client.leaseClient.leaseKeepAlive();
  } catch (err) {
    return mapEtcdError(err, 'lease keep-alive');
  }
  return new Promise<unknown>((resolve) => {
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { stream.end(); } catch { /* already closed */ }
      resolve(err);
    };
    const timer = setTimeout(
      () => finish(unavailable(new Error(`lease keep-alive: ${pending.size} answers missing at the deadline`))),
      Math.max(0, deadline - Date.now()),
    );
    stream.on('data', (res: { ID: string; TTL: string }) => {
      const id = String(res.ID);
      if (settled || !pending.delete(id)) return;
      const ttl = Number(res.TTL);
      out.set(id, ttl > 0 ? ttl : 0);
      if (pending.size === 0) finish();
    });
    // Keeps a listener after settling too: a late stream error is never unhandled.
    stream.on('error', (err: Error) => finish(mapEtcdError(err, 'lease keep-alive')));
    stream.on('end', () => finish(unavailable(new Error('lease keep-alive stream ended early'))));
    for (const id of pending) stream.write({ ID: id });
  });
}

export const closedError = (): RegistryError => new RegistryError('WARMPOOL_REGISTRY_CLOSED', 'etcd store is closed');
