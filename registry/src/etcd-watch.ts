/**
 * Watches for EtcdKvStore. Private helper of etcd-kv.ts.
 *
 * etcd3's Watcher reconnects by itself, but resumes from the header revision of the last
 * response + 1. While a watcher is catching up on history (and right after its creation)
 * that header revision is ahead of the events actually delivered, so a disconnect at that
 * moment would silently skip events. We track the revision after the last delivered event
 * and write it back into the watcher's request, which etcd3 re-sends on reconnect.
 *
 * States: connecting -> live <-> disconnected -> (closed | reset). After `reset`
 * (compaction, a cancel by etcd) nothing more is delivered: the owner re-lists.
 */
import type { Etcd3, IWatchCreateRequest, IWatchResponse, Watcher } from 'etcd3';
import { WatchManager } from 'etcd3/lib/watch.js';
import type { KvEvent, KvWatch, KvWatchHandlers } from './kv.js';
import { mapEtcdError } from './etcd-errors.js';
import { unavailable } from './errors.js';
import { watchResponseBytes } from './etcd-watch-size.js';

/** Keys a watch follows: everything under `start` as a prefix, or the byte range [start, end). */
export interface WatchedKeys { start: string; end?: string }

/** What the watch streams of one store received: messages and their protobuf bytes. */
export interface WatchTraffic { messages: number; bytes: number }

type WatchState = 'connecting' | 'live' | 'disconnected' | 'closed' | 'reset';

/**
 * etcd3 1.1.x throws from its watch stream's data handler, an uncaught exception that ends
 * the process, when a response names a watch id it no longer knows ("Failed to find watcher
 * for IWatchResponse"): an answer for a watch cancelled a moment before, or, when several
 * watches are re-created together after a compaction, one whose "created and canceled"
 * answer etcd3 paired with another pending watch. Seen here with a cache closed right after
 * reconnecting past a compaction (test/e2e/registry-cache.test.ts). Such a response is
 * dropped: the watch it belonged to was cancelled, and its owner re-lists that prefix on the
 * cancel (onReset) or at the cache's consistency check.
 */
function dropResponsesOfUnknownWatches(): void {
  type Manager = { watchers: { id: string | null }[]; handleResponse(res: IWatchResponse): void; warmpoolGuarded?: boolean };
  const proto = WatchManager.prototype as unknown as Manager;
  if (proto.warmpoolGuarded) return;
  const handle = proto.handleResponse;
  proto.handleResponse = function (this: Manager, res: IWatchResponse): void {
    if (!this.watchers.some((w) => w.id === res.watch_id)) return;
    handle.call(this, res);
  };
  proto.warmpoolGuarded = true;
}
dropResponsesOfUnknownWatches();

/** Rethrows a handler's exception outside the etcd3 stream (a bug in the handler must be loud). */
function deliver(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    setImmediate(() => { throw err; });
  }
}

/** A watch's keys as messages name them: the prefix, or start..end. */
function describe(keys: WatchedKeys): string {
  return keys.end === undefined ? keys.start : `${keys.start}..${keys.end}`;
}

export class EtcdWatch implements KvWatch {
  private state: WatchState = 'connecting';
  private watcher: Watcher;
  /** First revision not yet delivered. */
  private next: bigint;
  private closing: Promise<void> | undefined;

  /** The keys, as messages name them. */
  private readonly label: string;

  private constructor(
    client: Etcd3,
    keys: WatchedKeys,
    afterRevision: string,
    private readonly handlers: KvWatchHandlers,
    private readonly traffic: WatchTraffic,
    private readonly onDone: (w: EtcdWatch) => void,
  ) {
    this.label = describe(keys);
    this.next = BigInt(afterRevision) + 1n;
    const builder = keys.end === undefined ? client.watch().prefix(keys.start) : client.watch().inRange({ start: keys.start, end: keys.end });
    // The builder's startRevision() goes through Number(): set the int64 as a string instead.
    (builder as unknown as { request: IWatchCreateRequest }).request.start_revision = this.next.toString();
    this.watcher = builder.watcher();
    this.watcher.on('connected', () => {
      this.pinResume();
      if (this.state === 'disconnected') {
        this.state = 'live';
        deliver(() => this.handlers.onConnectionChange?.(true));
      } else if (this.state === 'connecting') {
        this.state = 'live';
      }
    });
    this.watcher.on('data', (res: IWatchResponse) => this.onData(res));
    this.watcher.on('disconnected', () => {
      if (this.state !== 'live') return;
      this.state = 'disconnected';
      deliver(() => this.handlers.onConnectionChange?.(false));
    });
    this.watcher.on('error', (err: Error) => this.onCanceled(err));
  }

  /** Resolves once etcd accepted the watch; rejects on a refusal or after `timeoutMs`. */
  static async start(
    client: Etcd3,
    keys: WatchedKeys,
    afterRevision: string,
    handlers: KvWatchHandlers,
    opts: { timeoutMs: number; traffic: WatchTraffic },
    onDone: (w: EtcdWatch) => void,
  ): Promise<EtcdWatch> {
    const w = new EtcdWatch(client, keys, afterRevision, handlers, opts.traffic, onDone);
    const prefix = w.label;
    const timeoutMs = opts.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(unavailable(new Error(`watch ${prefix}: etcd did not accept the watch within ${timeoutMs} ms`))), timeoutMs);
        w.watcher.once('connected', () => resolve());
        w.watcher.once('error', (err: Error) => reject(mapEtcdError(err, `watch ${prefix}`)));
      });
    } catch (err) {
      await w.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return w;
  }

  private pinResume(): void {
    this.watcher.request.start_revision = this.next.toString();
  }

  private onData(res: IWatchResponse): void {
    this.traffic.messages++;
    this.traffic.bytes += watchResponseBytes(res);
    if (this.state === 'closed' || this.state === 'reset') return;
    const events: KvEvent[] = (res.events ?? []).map((ev) => {
      const key = ev.kv.key.toString();
      const modRevision = String(ev.kv.mod_revision);
      return ev.type === 'Put'
        ? { type: 'put' as const, key, value: ev.kv.value.toString(), modRevision }
        : { type: 'delete' as const, key, modRevision };
    });
    if (events.length) {
      const last = events[events.length - 1]!.modRevision;
      this.next = BigInt(last) + 1n;
      this.pinResume();
      deliver(() => this.handlers.onEvents(events, last));
    } else {
      // A progress notification: etcd only sends those to watchers that have caught up.
      const header = BigInt(res.header.revision) + 1n;
      if (header > this.next) this.next = header;
      this.pinResume();
    }
  }

  private onCanceled(err: Error): void {
    if (this.state === 'closed' || this.state === 'reset') return;
    const wasConnecting = this.state === 'connecting';
    // etcd3 already dropped the watcher from its stream: never cancel it again.
    this.state = 'reset';
    this.onDone(this);
    if (wasConnecting) return; // start() rejects with this error
    const detail = err?.message?.replace(/^Watcher canceled: ?/, '') ?? '';
    const reason = detail
      ? `etcd canceled the watch on ${this.label}: ${detail}`
      : `etcd canceled the watch on ${this.label} (revision ${this.next} compacted?)`;
    deliver(() => this.handlers.onReset(reason));
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    const wasReset = this.state === 'reset';
    this.state = 'closed';
    this.onDone(this);
    if (wasReset) return (this.closing = Promise.resolve());
    // cancel() waits for etcd's answer; never let a dead connection hang close().
    this.closing = Promise.race([
      this.watcher.cancel().catch(() => undefined),
      new Promise<void>((r) => setTimeout(r, 2000).unref()),
    ]);
    return this.closing;
  }
}
