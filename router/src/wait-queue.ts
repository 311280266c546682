/**
 * Fair FIFO waiting for ready instances, per service, within one router.
 *
 * Requests that find no ready instance queue up in arrival order. When instances become
 * ready (the cache's 'ready' event calls `pump`), as many waiters as there are ready
 * instances are woken, oldest first, and each tries one claim. A waiter whose claim loses
 * (another router took the instance) keeps its place and sleeps until the next pump. A
 * newcomer only claims directly when nobody of this service is waiting, so it never
 * overtakes a waiter.
 */

export type WaitOutcome = 'turn' | 'timeout' | 'aborted' | 'closed';

interface Waiter {
  busy: boolean;
  /** A pump came while this waiter was claiming: try again at once after a loss. */
  missedPump: boolean;
  wake: ((o: WaitOutcome) => void) | undefined;
}

export interface WaitTicket {
  /** Resolves when it is this waiter's turn to try a claim, or the wait is over. */
  next(): Promise<WaitOutcome>;
  /** The claim attempt that followed a turn is over (lost): wait for the next turn. */
  lost(): void;
  /** Leaves the queue (after success, timeout or abort); lets the next waiters try. */
  leave(): void;
  /** Waiters ahead of this one. */
  position(): number;
}

export class WaitQueue {
  private queues = new Map<string, Waiter[]>();
  private closed = false;

  /**
   * `readyCount(service)`: how many instances the cache shows ready and unclaimed.
   * `onChange`: a request joined or left a queue (the router publishes its demand).
   */
  constructor(private readonly readyCount: (service: string) => number, private readonly onChange?: (service: string) => void) {}

  waiting(service: string): number {
    return this.queues.get(service)?.length ?? 0;
  }

  services(): string[] {
    return [...this.queues.keys()];
  }

  /** Joins the queue; `deadline` (ms from now) and `signal` end the wait. */
  join(service: string, waitMs: number, signal?: AbortSignal): WaitTicket {
    let q = this.queues.get(service);
    if (!q) this.queues.set(service, (q = []));
    const queue = q;
    const w: Waiter = { busy: false, missedPump: false, wake: undefined };
    queue.push(w);
    this.onChange?.(service);
    let done: WaitOutcome | undefined;
    const finish = (o: WaitOutcome): void => {
      if (done) return;
      done = o;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const wake = w.wake;
      w.wake = undefined;
      wake?.(o);
    };
    const timer = setTimeout(() => finish('timeout'), Math.max(0, waitMs));
    const onAbort = (): void => finish('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) finish('aborted');
    if (this.closed) finish('closed');

    const ticket: WaitTicket = {
      next: () => {
        if (done) return Promise.resolve(done);
        if (w.missedPump) {
          w.missedPump = false;
          w.busy = true;
          return Promise.resolve('turn');
        }
        const p = new Promise<WaitOutcome>((resolve) => { w.wake = resolve; });
        this.pump(service);
        return p;
      },
      lost: () => { w.busy = false; },
      leave: () => {
        finish('closed');
        const i = queue.indexOf(w);
        if (i >= 0) queue.splice(i, 1);
        if (i >= 0) this.onChange?.(service);
        if (queue.length === 0 && this.queues.get(service) === queue) this.queues.delete(service);
        this.pump(service);
      },
      position: () => Math.max(0, queue.indexOf(w)),
    };
    return ticket;
  }

  /** Wakes the oldest idle waiters, one per ready instance not already being claimed. */
  pump(service: string): void {
    const q = this.queues.get(service);
    if (!q) return;
    let busy = 0;
    for (const w of q) if (w.busy) busy++;
    const ready = this.readyCount(service);
    let available = ready - busy;
    for (const w of q) {
      if (w.busy) { if (ready > 0) w.missedPump = true; continue; }
      if (available <= 0) break;
      if (!w.wake) continue;
      const wake = w.wake;
      w.wake = undefined;
      w.busy = true;
      available--;
      wake('turn');
    }
  }

  /** Ends every wait with 'closed' (router shutdown). */
  close(): void {
    this.closed = true;
    for (const q of this.queues.values()) {
      for (const w of q) {
        const wake = w.wake;
        w.wake = undefined;
        wake?.('closed');
      }
    }
  }
}
