/**
 * A kept lease on Consul: a session with Behavior=delete renewed every TTL/3. Private helper
 * of consul-kv.ts.
 *
 * Lost when a renewal says the session is gone (404), or when no renewal succeeded for a
 * full TTL: Consul may invalidate a session any time between TTL and 2 x TTL after its last
 * renewal, so past TTL the owner must not rely on it any more.
 */
import type { LeaseHandle } from './kv.js';
import { type ConsulHttp, mapConsulError } from './consul-http.js';
import { LostSignal } from './lost-signal.js';

type State = 'alive' | 'lost' | 'revoked' | 'released';

export class ConsulKeptLease implements LeaseHandle {
  private state: State = 'alive';
  private readonly lost = new LostSignal();
  private lastOk = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;

  constructor(
    private readonly http: ConsulHttp,
    readonly id: string,
    readonly ttlSec: number,
    private readonly onDone: (l: ConsulKeptLease) => void,
  ) {
    this.schedule((ttlSec * 1000) / 3);
  }

  private schedule(ms: number): void {
    if (this.state !== 'alive') return;
    this.timer = setTimeout(() => void this.renew(), ms);
  }

  private async renew(): Promise<void> {
    if (this.state !== 'alive' || this.renewing) return;
    this.renewing = true;
    try {
      const ttl = await this.http.renewSession(this.id);
      if (ttl <= 0) return this.markLost(`Consul session ${this.id} is gone (expired or destroyed)`);
      this.lastOk = Date.now();
      this.schedule((this.ttlSec * 1000) / 3);
    } catch {
      const silentMs = Date.now() - this.lastOk;
      if (silentMs > this.ttlSec * 1000) {
        return this.markLost(`Consul session ${this.id} could not be renewed for ${Math.round(silentMs / 1000)} s (TTL ${this.ttlSec} s): it may have expired`);
      }
      // Retry sooner than the normal period, but keep the TTL deadline in sight.
      this.schedule(Math.min(1000, (this.ttlSec * 1000) / 10));
    } finally {
      this.renewing = false;
    }
  }

  onLost(listener: (reason: string) => void): void {
    this.lost.on(listener);
  }

  async revoke(): Promise<void> {
    if (this.state === 'revoked') return;
    this.stop('revoked');
    try {
      await this.http.destroySession(this.id);
    } catch (err) {
      throw mapConsulError(err, `destroy session ${this.id}`);
    }
  }

  release(): void {
    if (this.state === 'alive') this.stop('released');
  }

  private stop(state: State): void {
    this.state = state;
    clearTimeout(this.timer);
    this.onDone(this);
  }

  private markLost(reason: string): void {
    if (this.state !== 'alive') return;
    this.stop('lost');
    this.lost.fire(reason);
  }
}
