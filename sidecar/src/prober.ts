import { EventEmitter } from 'node:events';
import type { Clock } from './clock.js';
import type { ReadinessOptions } from './config.js';
import type { SidecarState } from './protocol.js';

/** One probe of the app: its HTTP status, or undefined when it did not answer. */
export type ProbeFn = () => Promise<number | undefined>;

export interface ProberSnapshot {
  state: SidecarState;
  bootMs: number | null;
  readyAt: number | null;
  since: number;
  reason?: string;
}

/**
 * Readiness, then liveness, of the app behind the sidecar, with the semantics of vLLM, TGI
 * and llama.cpp server (503 while the model loads, 200 once it serves).
 *
 *   booting --(probe == expectStatus)--> ready --(failureThreshold misses in a row)--> unhealthy
 *   booting --(bootTimeout passes)-----> failed
 *
 * failed and unhealthy are final: the agent destroys and replaces the instance. Probes never
 * overlap; the next one starts intervalMs after the previous one finished.
 *
 * Events: 'state' (ProberSnapshot) on every transition.
 */
export class Prober extends EventEmitter {
  private snap: ProberSnapshot;
  private misses = 0;
  private cancelTimer: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly opts: ReadinessOptions,
    private readonly probe: ProbeFn,
    private readonly clock: Clock,
    private readonly startedAt: number,
  ) {
    super();
    this.snap = { state: 'booting', bootMs: null, readyAt: null, since: clock.now() };
  }

  snapshot(): ProberSnapshot {
    return { ...this.snap };
  }

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
  }

  private schedule(ms: number): void {
    if (this.stopped || this.snap.state === 'failed' || this.snap.state === 'unhealthy') return;
    this.cancelTimer = this.clock.setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let status: number | undefined;
    try {
      status = await this.probe();
    } catch {
      status = undefined;
    }
    if (this.stopped) return;
    this.observe(status);
    this.schedule(this.opts.intervalMs);
  }

  /** Applies one probe result (exposed for tests that drive the prober by hand). */
  observe(status: number | undefined): void {
    const now = this.clock.now();
    const ok = status === this.opts.expectStatus;
    switch (this.snap.state) {
      case 'booting':
        if (ok) {
          const bootMs = Math.max(0, now - this.startedAt);
          this.transition({ state: 'ready', bootMs, readyAt: now, since: now });
        } else if (now - this.startedAt >= this.opts.bootTimeoutMs) {
          this.transition({
            state: 'failed', bootMs: null, readyAt: null, since: now,
            reason: `not ready after ${Math.round((now - this.startedAt) / 1000)} s (boot timeout ${this.opts.bootTimeoutMs / 1000} s; last probe: ${status ?? 'no answer'})`,
          });
        }
        return;
      case 'ready':
        if (ok) { this.misses = 0; return; }
        this.misses++;
        if (this.misses >= this.opts.failureThreshold) {
          this.transition({
            ...this.snap, state: 'unhealthy', since: now,
            reason: `${this.misses} failed liveness probes in a row (last: ${status ?? 'no answer'})`,
          });
        }
        return;
      default:
        return;
    }
  }

  private transition(next: ProberSnapshot): void {
    this.snap = next;
    this.emit('state', this.snapshot());
  }
}
