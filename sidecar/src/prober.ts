import { EventEmitter } from 'node:events';
import type { Clock } from './clock.js';
import type { LivenessOptions, ReadinessOptions } from './config.js';
import type { SidecarState } from './protocol.js';

/**
 * One probe of the app: its HTTP status; 'refused' when nothing listens (connection
 * refused: the server is down); undefined when it did not answer in time (or broke off).
 */
export type ProbeFn = () => Promise<number | 'refused' | undefined>;

/** Runs the warm-up requests; resolves undefined when all passed, else the reason. */
export type WarmupFn = () => Promise<string | undefined>;

export interface ProberSnapshot {
  state: SidecarState;
  /** From the app's start to the first successful readiness probe; null until then. */
  bootMs: number | null;
  /** Epoch ms of the report that made the instance ready (after any warm-up). */
  readyAt: number | null;
  /** How long the warm-up requests took; null when none ran (or not yet done). */
  warmupMs: number | null;
  since: number;
  reason?: string;
}

export interface ProberExtras {
  /** Liveness after ready; default: the readiness probe with its threshold (the behaviour before it existed). */
  liveness?: LivenessOptions;
  liveProbe?: ProbeFn;
  /** True while a session's request or tunnel is in flight through the sidecar. */
  busy?: () => boolean;
  /** Sent after readiness, before ready; without it the instance is ready at once. */
  warmup?: WarmupFn;
}

const describe = (s: number | 'refused' | undefined): string => (s === undefined ? 'no answer in time' : s === 'refused' ? 'connection refused' : String(s));

/**
 * Readiness, warm-up, then liveness, of the app behind the sidecar. Readiness has the
 * semantics of vLLM, TGI and llama.cpp server (503 or refused connections while the model
 * loads, 200 once it serves).
 *
 *   booting --(probe == expectStatus)--> [warming --(every warm-up passed)-->] ready
 *   booting --(bootTimeout passes)-----> failed      warming --(a warm-up failed)--> failed
 *   ready --(liveness.failureThreshold misses in a row)--> unhealthy
 *
 * A busy instance (a request in flight through the sidecar: a long generation) is never
 * made unhealthy by a slow or failing health answer: model servers answer /health slowly
 * while they generate. Only refused connections (nothing listens any more) count then; the
 * misses of an idle instance all count. failed and unhealthy are final: the agent destroys
 * and replaces the instance. Probes never overlap; the next one starts intervalMs after the
 * previous one finished. Events: 'state' (ProberSnapshot) on every transition.
 */
export class Prober extends EventEmitter {
  private snap: ProberSnapshot;
  private misses = 0;
  private cancelTimer: (() => void) | undefined;
  private stopped = false;
  private readonly liveness: LivenessOptions;
  private readonly liveProbe: ProbeFn;

  constructor(
    private readonly opts: ReadinessOptions,
    private readonly probe: ProbeFn,
    private readonly clock: Clock,
    private readonly startedAt: number,
    private readonly extras: ProberExtras = {},
  ) {
    super();
    this.snap = { state: 'booting', bootMs: null, readyAt: null, warmupMs: null, since: clock.now() };
    this.liveness = extras.liveness ?? { ...opts };
    this.liveProbe = extras.liveProbe ?? probe;
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

  private final(): boolean {
    return this.snap.state === 'failed' || this.snap.state === 'unhealthy';
  }

  private schedule(ms: number): void {
    if (this.stopped || this.final()) return;
    this.cancelTimer = this.clock.setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const live = this.snap.state === 'ready';
    let status: number | 'refused' | undefined;
    try {
      status = await (live ? this.liveProbe : this.probe)();
    } catch {
      status = undefined;
    }
    if (this.stopped) return;
    this.observe(status);
    if (this.snap.state === 'warming') await this.warmUp();
    this.schedule(this.snap.state === 'ready' ? this.liveness.intervalMs : this.opts.intervalMs);
  }

  private async warmUp(): Promise<void> {
    const began = this.clock.now();
    let failure: string | undefined;
    try {
      failure = await this.extras.warmup!();
    } catch (err) {
      failure = `warm-up failed: ${(err as Error).message}`;
    }
    if (this.stopped) return;
    const now = this.clock.now();
    if (failure) this.transition({ ...this.snap, state: 'failed', readyAt: null, since: now, reason: failure });
    else this.transition({ ...this.snap, state: 'ready', readyAt: now, warmupMs: now - began, since: now });
  }

  /** Applies one probe result (exposed for tests that drive the prober by hand). */
  observe(status: number | 'refused' | undefined): void {
    const now = this.clock.now();
    switch (this.snap.state) {
      case 'booting': {
        if (status === this.opts.expectStatus) {
          const bootMs = Math.max(0, now - this.startedAt);
          if (this.extras.warmup) this.transition({ state: 'warming', bootMs, readyAt: null, warmupMs: null, since: now });
          else this.transition({ state: 'ready', bootMs, readyAt: now, warmupMs: null, since: now });
        } else if (now - this.startedAt >= this.opts.bootTimeoutMs) {
          this.transition({
            state: 'failed', bootMs: null, readyAt: null, warmupMs: null, since: now,
            reason: `not ready after ${Math.round((now - this.startedAt) / 1000)} s (boot timeout ${this.opts.bootTimeoutMs / 1000} s; last probe: ${describe(status)})`,
          });
        }
        return;
      }
      case 'ready': {
        if (status === this.liveness.expectStatus) { this.misses = 0; return; }
        // Busy: a slow or failing health answer says nothing while the app streams an answer.
        if (status !== 'refused' && this.extras.busy?.()) return;
        this.misses++;
        if (this.misses >= this.liveness.failureThreshold) {
          this.transition({
            ...this.snap, state: 'unhealthy', since: now,
            reason: `${this.misses} failed liveness probes in a row (last: ${describe(status)})`,
          });
        }
        return;
      }
      default:
        return;
    }
  }

  private transition(next: ProberSnapshot): void {
    this.snap = next;
    this.emit('state', this.snapshot());
  }
}
