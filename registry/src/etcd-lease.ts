/**
 * etcd leases for EtcdKvStore: the kept lease handle and the batched one-shot keep-alive.
 * Private helpers of etcd-kv.ts.
 */
import type { Etcd3, Lease } from 'etcd3';
import type { LeaseHandle } from './kv.js';
import { mapEtcdError } from './etcd-errors.js';
import { RegistryError, unavailable } from './errors.js';
import { LostSignal } from './lost-signal.js';

type KeptState = 'alive' | 'lost' | 'revoked' | 'released';

/**
 * A lease kept alive by etcd3's keep-alive loop, plus a watchdog: etcd3 only reports `lost`
 * after 2 x TTL without a keep-alive, but etcd may expire the lease after 1 x TTL. The
 * watchdog declares it lost once no keep-alive was acknowledged for a full TTL, so owners
 * never believe in a lease etcd has already dropped (no blind spot between TTL and 2 x TTL).
 */
export class EtcdKeptLease implements LeaseHandle {
  private state: KeptState = 'alive';
  private readonly lost = new LostSignal();
  private lastAck = Date.now();
  private readonly watchdog: NodeJS.Timeout;

  constructor(
    private readonly lease: Lease,
    readonly id: string,
    readonly ttlSec: number,
    private readonly onDone: (l: EtcdKeptLease) => void,
  ) {
    lease.on('keepaliveSucceeded', () => { this.lastAck = Date.now(); });
    lease.on('lost', (err: Error) => this.markLost(`etcd lease ${id} lost: ${err?.message ?? String(err)}`));
    const tick = Math.max(100, Math.min(1000, (ttlSec * 1000) / 4));
    this.watchdog = setInterval(() => {
      const silentMs = Date.now() - this.lastAck;
      if (silentMs > ttlSec * 1000) {
        this.markLost(`no keep-alive for etcd lease ${id} was acknowledged for ${Math.round(silentMs / 1000)} s (TTL ${ttlSec} s): it may have expired`);
      }
    }, tick);
    this.watchdog.unref();
  }

  onLost(listener: (reason: string) => void): void {
    this.lost.on(listener);
  }

  async revoke(): Promise<void> {
    if (this.state === 'revoked') return;
    this.stop('revoked');
    try {
      await this.lease.revoke();
    } catch (err) {
      throw mapEtcdError(err, `revoke lease ${this.id}`);
    }
  }

  release(): void {
    if (this.state === 'alive') this.stop('released');
  }

  private stop(state: KeptState): void {
    this.state = state;
    clearInterval(this.watchdog);
    // Stops etcd3's keep-alive loop without revoking.
    if (state !== 'revoked') this.lease.release();
    this.onDone(this);
  }

  private markLost(reason: string): void {
    if (this.state !== 'alive') return;
    this.stop('lost');
    this.lost.fire(reason);
  }
}

/**
 * One keep-alive for each lease id over a single bidirectional LeaseKeepAlive stream: all
 * requests are written at once and the responses collected by id, so hundreds of leases
 * cost one stream and one round trip. TTL <= 0 in a response means the lease is gone.
 * A stream that fails (a dead member: etcd3 does not retry streams) is retried on another
 * member for the ids still unanswered; keep-alives are idempotent.
 */
export async function keepAliveBatch(client: Etcd3, leaseIds: string[], timeoutMs: number, attempts = 4): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const pending = new Set<string>();
  for (const id of leaseIds) {
    if (/^\d+$/.test(id)) pending.add(id);
    else out.set(id, 0); // not an etcd lease id: it cannot exist
  }
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (let i = 0; i < attempts && pending.size > 0 && Date.now() < deadline; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 50 * i));
    lastErr = await keepAliveRound(client, pending, out, deadline);
  }
  if (pending.size > 0) {
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
