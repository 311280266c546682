export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** A failure this long after the previous one starts counting from 1 again. */
  resetAfterMs: number;
  now: () => number;
  random: () => number;
}

export interface BackoffState {
  failures: number;
  /** No new instance of the service before this time (epoch ms). */
  until: number;
  lastDelayMs: number;
  lastReason: string;
}

/**
 * Exponential backoff per service for instances that fail (boot timeout, crash, unhealthy):
 * base * 2^(failures-1), capped, with +-20 % jitter so agents do not retry in lockstep. A
 * claim (the service works) resets it.
 */
export class ServiceBackoff {
  private states = new Map<string, BackoffState>();

  constructor(private readonly opts: BackoffOptions) {}

  failure(service: string, reason: string): BackoffState {
    const now = this.opts.now();
    const prev = this.states.get(service);
    const fresh = !prev || now - (prev.until - prev.lastDelayMs) > this.opts.resetAfterMs;
    const failures = fresh ? 1 : prev.failures + 1;
    const exp = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(failures - 1, 30));
    const delay = Math.round(exp * (0.8 + 0.4 * this.opts.random()));
    const s: BackoffState = { failures, until: now + delay, lastDelayMs: delay, lastReason: reason };
    this.states.set(service, s);
    return s;
  }

  success(service: string): void {
    this.states.delete(service);
  }

  until(service: string): number | undefined {
    return this.states.get(service)?.until;
  }

  /** Services whose backoff is still running (for plan input and status). */
  active(): Map<string, number> {
    const now = this.opts.now();
    const out = new Map<string, number>();
    for (const [s, st] of this.states) if (st.until > now) out.set(s, st.until);
    return out;
  }

  snapshot(): Record<string, BackoffState> {
    return Object.fromEntries([...this.states].map(([k, v]) => [k, { ...v }]));
  }
}
