/** Shared helpers of the KvStore conformance suite. */
import type { KvEntry, KvEvent, KvStore, KvWatch } from '@warmpool/registry';

export interface KvStoreFixture {
  store: KvStore;
  cleanup(): Promise<void>;
}

export type MakeStore = () => Promise<KvStoreFixture>;

/**
 * Lease timings per backend. Consul raises every session TTL to at least 10 s and
 * invalidates a session lazily, up to 2 x TTL after its last renewal; etcd and memory
 * expire a lease at its TTL.
 */
export function leaseTiming(backend: KvStore['backend']): { ttlSec: number; expireWithinMs: number; holdMs: number } {
  if (backend === 'consul') return { ttlSec: 10, expireWithinMs: 2 * 10_000 + 8_000, holdMs: 2 * 10_000 + 2_000 };
  return { ttlSec: 3, expireWithinMs: 3_000 + 4_000, holdMs: 2 * 3_000 + 500 };
}

/** Whether the backend keeps a history of every event (etcd, memory) or reports diffs of states (Consul). */
export const exactHistory = (backend: KvStore['backend']): boolean => backend !== 'consul';

/** Time passing is what these tests are about (TTLs): there is no condition to poll for. */
export const elapse = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const put = (key: string, value: string, lease?: string) => ({ type: 'put' as const, key, value, ...(lease ? { lease } : {}) });
export const del = (key: string) => ({ type: 'delete' as const, key });

/** Collects what a watch delivers. */
export class Recorder {
  events: KvEvent[] = [];
  batches: { events: KvEvent[]; revision: string }[] = [];
  resets: string[] = [];
  connection: boolean[] = [];
  watch: KvWatch | undefined;

  readonly handlers = {
    onEvents: (events: KvEvent[], revision: string): void => {
      this.batches.push({ events, revision });
      this.events.push(...events);
    },
    onReset: (reason: string): void => {
      this.resets.push(reason);
    },
    onConnectionChange: (connected: boolean): void => {
      this.connection.push(connected);
    },
  };

  static async start(store: KvStore, prefix: string, after: string): Promise<Recorder> {
    const r = new Recorder();
    r.watch = await store.watch(prefix, after, r.handlers);
    return r;
  }

  /** Short (type key=value) strings, for readable comparisons. */
  summary(): string[] {
    return this.events.map(show);
  }
}

export const show = (e: KvEvent): string => (e.type === 'put' ? `put ${e.key}=${e.value}` : `delete ${e.key}`);

/** Applies events to a key -> value map (a snapshot). */
export function applyEvents(state: Map<string, string>, events: KvEvent[]): Map<string, string> {
  const out = new Map(state);
  for (const e of events) {
    if (e.type === 'put') out.set(e.key, e.value ?? '');
    else out.delete(e.key);
  }
  return out;
}

export const asMap = (entries: KvEntry[]): Map<string, string> => new Map(entries.map((e) => [e.key, e.value]));

export const sortedPairs = (m: Map<string, string>): [string, string][] => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** True when revisions never go down. */
export function nonDecreasing(revs: string[]): boolean {
  for (let i = 1; i < revs.length; i++) if (BigInt(revs[i]!) < BigInt(revs[i - 1]!)) return false;
  return true;
}
