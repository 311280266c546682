/**
 * Watches for ConsulKvStore: blocking queries on a prefix, each answer diffed against the
 * previous snapshot. Private helper of consul-kv.ts.
 *
 * Consul has no event history, so a watch needs the exact state at its start revision
 * (a snapshot from list(), kept by the store) and reports what changed between two
 * consecutive answers: several writes to one key between two answers arrive as one put
 * (the last value), a key created and deleted in between is not reported at all. Puts carry
 * the key's ModifyIndex, deletes the index of the answer that noticed them.
 *
 * States: live <-> disconnected (errors, retried with backoff) -> closed | reset.
 * An answer whose index went backwards with different data (the agent lost its data, a
 * snapshot restore) means revisions are no longer comparable: onReset, the owner re-lists.
 * A backwards index with unchanged data (Consul reaping KV tombstones) is benign.
 */
import type { KvEntry, KvEvent, KvWatch, KvWatchHandlers } from './kv.js';
import { type ConsulHttp, type ConsulItem, RequestCtx } from './consul-http.js';

export interface ConsulWatchOptions {
  waitSec: number;
  backoff: { initialMs: number; maxMs: number };
  toConsulKey(key: string): string;
  toEntry(item: ConsulItem): KvEntry;
}

type State = 'live' | 'disconnected' | 'closed' | 'reset';

function deliver(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    setImmediate(() => { throw err; });
  }
}

/** Events that turn snapshot `before` into `after` (both keyed by key), in revision order. */
export function diffSnapshots(before: Map<string, KvEntry>, after: Map<string, KvEntry>, index: string): KvEvent[] {
  const events: KvEvent[] = [];
  for (const [key, e] of after) {
    if (before.get(key)?.modRevision !== e.modRevision) events.push({ type: 'put', key, value: e.value, modRevision: e.modRevision });
  }
  for (const key of before.keys()) {
    if (!after.has(key)) events.push({ type: 'delete', key, modRevision: index });
  }
  // Stable sort: same-revision events keep key order.
  return events.sort((a, b) => (BigInt(a.modRevision) < BigInt(b.modRevision) ? -1 : BigInt(a.modRevision) > BigInt(b.modRevision) ? 1 : 0));
}

export class ConsulWatch implements KvWatch {
  private state: State = 'live';
  private ctx: RequestCtx | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly http: ConsulHttp,
    private readonly prefix: string,
    private snapshot: Map<string, KvEntry>,
    /** Index to block on first; `seen` = whether Consul returned it for this prefix. */
    private index: bigint,
    private seen: boolean,
    private readonly handlers: KvWatchHandlers,
    private readonly opts: ConsulWatchOptions,
    private readonly onDone: (w: ConsulWatch) => void,
  ) {}

  /** Starts the blocking-query loop. */
  start(): this {
    if (this.state === 'live') this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    let delay = this.opts.backoff.initialMs;
    while (this.state === 'live' || this.state === 'disconnected') {
      this.ctx = new RequestCtx();
      let answer: { index: bigint; items: ConsulItem[] };
      try {
        answer = await this.http.read(this.opts.toConsulKey(this.prefix), { recurse: true, index: this.index, waitSec: this.opts.waitSec, ctx: this.ctx });
      } catch {
        if (this.isOver()) return;
        if (this.state === 'live') {
          this.state = 'disconnected';
          deliver(() => this.handlers.onConnectionChange?.(false));
        }
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.opts.backoff.maxMs);
        continue;
      }
      if (this.isOver()) return;
      delay = this.opts.backoff.initialMs;
      if (this.state === 'disconnected') {
        this.state = 'live';
        deliver(() => this.handlers.onConnectionChange?.(true));
        if (this.isOver()) return;
      }
      const next = new Map<string, KvEntry>();
      for (const item of answer.items) {
        const e = this.opts.toEntry(item);
        if (e.key.startsWith(this.prefix)) next.set(e.key, e);
      }
      const events = diffSnapshots(this.snapshot, next, answer.index.toString());
      if (answer.index < this.index && events.length > 0) {
        // Before the first answer `index` may come from elsewhere (a broader list, a txn).
        const why = this.seen
          ? `Consul index for ${this.prefix} went backwards (${this.index} -> ${answer.index}) with different data`
          : `Consul index for ${this.prefix} (${answer.index}) is below the watch start (${this.index}) but the data changed`;
        return this.reset(why);
      }
      this.snapshot = next;
      this.index = answer.index;
      this.seen = true;
      if (events.length) deliver(() => this.handlers.onEvents(events, answer.index.toString()));
    }
  }

  private isOver(): boolean {
    return this.state === 'closed' || this.state === 'reset';
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  /** Ends the watch and tells the owner to re-list (asynchronously, never from inside start()). */
  reset(reason: string): void {
    if (this.isOver()) return;
    this.state = 'reset';
    this.stop();
    queueMicrotask(() => deliver(() => this.handlers.onReset(reason)));
  }

  private stop(): void {
    this.ctx?.cancel();
    clearTimeout(this.sleepTimer);
    this.wake?.();
    this.onDone(this);
  }

  async close(): Promise<void> {
    if (!this.isOver()) {
      this.state = 'closed';
      this.stop();
    }
    await this.loop.catch(() => undefined);
  }
}
