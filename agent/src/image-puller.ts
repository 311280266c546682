import type { HostImageState, PullPolicy, ServiceSpec } from '@warmpool/registry';
import type { ServiceBackoff } from './backoff.js';
import type { Clock } from './clock.js';
import type { ContainerRuntime, PullBytes } from './docker.js';
import { AgentError } from './errors.js';
import { classifyPullError, type PullFailureKind } from './image-ref.js';
import type { Logger } from './logger.js';
import type { AuthLookup } from './registry-auth.js';

export type PullOutcome =
  | { ok: true; pulled: boolean; ms: number }
  | { ok: false; kind: PullFailureKind; reason: string; failures: number; retryInMs: number };

export interface ImagePullerOptions {
  runtime: ContainerRuntime;
  auth: AuthLookup;
  clock: Clock;
  log: Logger;
  /** Per image (keys are image references), never the services' crash backoff. */
  backoff: ServiceBackoff;
  /** Something in `states` changed (the agent republishes its host record, throttled). */
  onChange: () => void;
  /** A pull brought the image to the host (image garbage collection tracks it). */
  onPulled?: (image: string) => void;
}

interface Job {
  bytes: PullBytes;
  listeners: Set<(b: PullBytes) => void>;
  done: Promise<PullOutcome>;
  abort: AbortController;
}

export const DEFAULT_PULL_TIMEOUT_SEC = 1800;

/** The spec's pull policy and timeout with their defaults (specs written before they existed). */
export function pullSettings(spec: ServiceSpec): { policy: PullPolicy; timeoutMs: number } {
  return { policy: spec.pullPolicy ?? 'IfNotPresent', timeoutMs: (spec.pullTimeoutSec ?? DEFAULT_PULL_TIMEOUT_SEC) * 1000 };
}

/**
 * Images on this host: at most one pull per image at a time, shared by every instance (and
 * the pull ahead of need) that waits for it; a failed pull backs off per image, with the
 * registry's own words as the reason. docs/images.md has the rules.
 */
export class ImagePuller {
  /** How each image stands here (published in the host record). */
  readonly states = new Map<string, HostImageState>();
  private readonly jobs = new Map<string, Job>();
  private readonly lastFailure = new Map<string, { kind: PullFailureKind; reason: string }>();
  private readonly prefetched = new Set<string>();
  private closed = false;

  constructor(private readonly opts: ImagePullerOptions) {}

  /** No new pull of this image before this time (epoch ms), when a failure backs it off. */
  backoffUntil(image: string): number | undefined {
    const until = this.opts.backoff.until(image);
    return until !== undefined && until > this.opts.clock.now() ? until : undefined;
  }

  /**
   * Makes sure `image` is on the host as `policy` asks: IfNotPresent pulls only when it is
   * missing, Always pulls (or joins the pull in flight), Never only looks. `onWait` is
   * called (with the bytes so far, then at every change) only when a pull must be waited
   * for. Rejects only when the engine is unreachable (not the image's fault).
   */
  async ensure(image: string, policy: PullPolicy, timeoutMs: number, onWait?: (b: PullBytes) => void): Promise<PullOutcome> {
    const t0 = this.opts.clock.now();
    const inFlight = this.jobs.get(image);
    if (!inFlight) {
      if (this.backoffUntil(image) !== undefined) return this.failed(image);
      if (policy !== 'Always' && await this.opts.runtime.imagePresent(image)) {
        this.setState(image, { state: 'present', at: this.opts.clock.now() });
        return { ok: true, pulled: false, ms: this.opts.clock.now() - t0 };
      }
      if (policy === 'Never') {
        return this.fail(image, 'not-present', `image ${image} is not on this host and the service's pullPolicy is Never`);
      }
    }
    const job = this.jobs.get(image) ?? this.startJob(image, timeoutMs);
    if (onWait) {
      job.listeners.add(onWait);
      onWait(job.bytes);
    }
    try {
      const r = await job.done;
      return r.ok ? { ...r, ms: this.opts.clock.now() - t0 } : r;
    } finally {
      if (onWait) job.listeners.delete(onWait);
    }
  }

  /** Stops one waiter's progress calls (an instance that no longer waits for the image). */
  leave(image: string, onWait: (b: PullBytes) => void): void {
    this.jobs.get(image)?.listeners.delete(onWait);
  }

  /**
   * Ahead of need: starts pulling the images of these services (once per image and policy,
   * again after a failure's backoff), so the first instance does not wait for the pull.
   */
  prefetch(specs: readonly ServiceSpec[]): void {
    if (this.closed) return;
    const keys = new Set<string>();
    for (const spec of specs) {
      const { policy, timeoutMs } = pullSettings(spec);
      const key = `${spec.image}\n${policy}`;
      keys.add(key);
      if (this.prefetched.has(key) || this.backoffUntil(spec.image) !== undefined) continue;
      this.prefetched.add(key);
      void this.ensure(spec.image, policy, timeoutMs).then(
        (r) => { if (!r.ok) this.prefetched.delete(key); },
        (err: unknown) => {
          this.prefetched.delete(key);
          this.opts.log.warn({ err, image: spec.image }, 'could not check or pull an image ahead of need');
        },
      );
    }
    for (const k of [...this.prefetched]) if (!keys.has(k)) this.prefetched.delete(k);
  }

  /**
   * Forgets images no service uses any more (they leave the host record), and stops their
   * pulls in flight once no instance waits for them.
   */
  retain(images: ReadonlySet<string>): void {
    let changed = false;
    for (const image of [...this.states.keys()]) {
      if (images.has(image)) continue;
      const job = this.jobs.get(image);
      if (!job) { this.states.delete(image); changed = true; } else if (!job.listeners.size) job.abort.abort('no service uses the image any more');
    }
    if (changed) this.opts.onChange();
  }

  /** Stops every pull in flight (the agent is stopping). */
  close(): void {
    this.closed = true;
    for (const job of this.jobs.values()) job.abort.abort('the agent is stopping');
  }

  private startJob(image: string, timeoutMs: number): Job {
    const { runtime, clock, log } = this.opts;
    const abort = new AbortController();
    const job: Job = { bytes: { done: 0, total: null }, listeners: new Set(), abort, done: undefined as unknown as Promise<PullOutcome> };
    this.jobs.set(image, job);
    this.setState(image, { state: 'pulling', bytesDone: 0, bytesTotal: null, percent: null, at: clock.now() });
    const cancelTimer = clock.setTimeout(() => abort.abort(`timed out after ${Math.round(timeoutMs / 1000)} s (pullTimeoutSec)`), timeoutMs);
    job.done = (async (): Promise<PullOutcome> => {
      const t0 = clock.now();
      try {
        log.info({ image }, 'pulling image');
        await runtime.pull(image, {
          auth: await this.opts.auth(image),
          signal: abort.signal,
          onProgress: (b) => {
            job.bytes = b;
            this.setState(image, { state: 'pulling', bytesDone: b.done, bytesTotal: b.total, percent: percentOf(b), at: clock.now() });
            for (const l of job.listeners) l(b);
          },
        });
        this.opts.backoff.success(image);
        this.opts.onPulled?.(image);
        this.lastFailure.delete(image);
        this.setState(image, { state: 'present', at: clock.now() });
        log.info({ image, pullMs: clock.now() - t0, bytes: job.bytes.done }, 'image pulled');
        return { ok: true, pulled: true, ms: clock.now() - t0 };
      } catch (err) {
        if (AgentError.is(err) && err.code === 'WARMPOOL_DOCKER_UNAVAILABLE' && !abort.signal.aborted) {
          this.states.delete(image);
          this.opts.onChange();
          throw err;
        }
        const why = String(abort.signal.reason ?? '');
        if (abort.signal.aborted && !/timed out/.test(why)) {
          // Stopped on purpose (agent stopping, image no longer used): not the image's fault.
          log.info({ image, why }, 'image pull stopped');
          this.states.delete(image);
          this.opts.onChange();
          return { ok: false, kind: 'other', reason: `pull of ${image} stopped: ${why}`, failures: 0, retryInMs: 0 };
        }
        const message = (err as Error).message;
        const kind: PullFailureKind = abort.signal.aborted && /timed out/.test(String(abort.signal.reason)) ? 'timeout' : classifyPullError(message);
        return this.fail(image, kind, message);
      } finally {
        cancelTimer();
        this.jobs.delete(image);
      }
    })();
    return job;
  }

  private fail(image: string, kind: PullFailureKind, message: string): PullOutcome {
    const b = this.opts.backoff.failure(image, message);
    const reason = kind === 'not-present' ? message : `pull of ${image} failed (${kind}): ${message}`;
    this.lastFailure.set(image, { kind, reason });
    this.setState(image, { state: 'failed', reason, at: this.opts.clock.now() });
    this.opts.log.warn({ image, kind, reason, failures: b.failures, retryInMs: b.lastDelayMs }, 'image pull failed; backing off for this image');
    return { ok: false, kind, reason, failures: b.failures, retryInMs: b.lastDelayMs };
  }

  private failed(image: string): PullOutcome {
    const last = this.lastFailure.get(image) ?? { kind: 'other' as const, reason: `pulls of ${image} are backing off` };
    const s = this.opts.backoff.snapshot()[image];
    return { ok: false, ...last, failures: s?.failures ?? 1, retryInMs: Math.max(0, (s?.until ?? 0) - this.opts.clock.now()) };
  }

  /** Records how the image stands; the host record is rewritten only when that changed (not for a mere re-check). */
  private setState(image: string, s: HostImageState): void {
    const prev = this.states.get(image);
    this.states.set(image, s);
    const same = prev && prev.state === s.state && prev.bytesDone === s.bytesDone && prev.bytesTotal === s.bytesTotal && prev.reason === s.reason;
    if (!same) this.opts.onChange();
    else this.states.set(image, prev);
  }
}

export function percentOf(b: PullBytes): number | null {
  return b.total ? Math.min(100, Math.round((1000 * b.done) / b.total) / 10) : null;
}
