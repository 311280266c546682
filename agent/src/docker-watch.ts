import type { Clock } from './clock.js';
import type { ContainerEvent, ContainerRuntime, EventSubscription } from './docker.js';
import type { Logger } from './logger.js';

/**
 * Keeps a Docker event subscription open: when the stream ends (the engine restarted, the
 * socket broke) it subscribes again with backoff (from `retryMs`, doubling to 5 s) and calls
 * `onConnected` after every successful subscription, so the agent re-lists what it may have
 * missed.
 */
export class DockerWatch {
  private sub: EventSubscription | undefined;
  private delay: number;
  private cancelRetry: (() => void) | undefined;
  private closed = false;
  private everConnected = false;

  constructor(private readonly opts: {
    runtime: ContainerRuntime;
    labels: Record<string, string>;
    clock: Clock;
    log: Logger;
    retryMs: number;
    onEvent: (e: ContainerEvent) => void;
    onConnected: () => Promise<void>;
  }) {
    this.delay = opts.retryMs;
  }

  get connected(): boolean { return this.sub !== undefined; }

  async connect(): Promise<void> {
    if (this.closed) return;
    const { log } = this.opts;
    try {
      this.sub = await this.opts.runtime.subscribe(this.opts.labels, this.opts.onEvent, (err) => {
        this.sub = undefined;
        if (this.closed) return;
        log.warn({ err }, 'docker event stream closed; reconnecting');
        this.retry();
      });
      if (this.everConnected) log.info('docker event stream re-established; re-listing containers');
      this.everConnected = true;
      this.delay = this.opts.retryMs;
      // Anything that happened while nobody listened shows up in a fresh list.
      await this.opts.onConnected();
    } catch (err) {
      log.warn({ err, retryMs: this.delay }, 'docker unavailable; retrying');
      this.retry();
    }
  }

  private retry(): void {
    if (this.closed || this.cancelRetry) return;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, 5_000);
    this.cancelRetry = this.opts.clock.setTimeout(() => { this.cancelRetry = undefined; void this.connect(); }, wait);
  }

  close(): void {
    this.closed = true;
    this.cancelRetry?.();
    this.sub?.close();
    this.sub = undefined;
  }
}
