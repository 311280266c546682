/**
 * The storage interface every registry backend implements (etcd, Consul, memory).
 * Registry logic (claims, hosts, slots, the cache) is written once on top of it, and one
 * conformance suite (registry/test/kv-conformance.ts) runs against every backend.
 *
 * Revisions are decimal strings: etcd's int64 revisions and Consul's indexes both exceed
 * what a JS number holds exactly over a long life.
 */

export interface KvEntry {
  key: string;
  value: string;
  /** Revision of the last write to this key (etcd mod_revision, Consul ModifyIndex). */
  modRevision: string;
  /** Lease (etcd) or session (Consul) the key is attached to, if any. */
  lease?: string;
}

export type KvCompare =
  /** The key does not exist. */
  | { key: string; op: 'absent' }
  /** The key exists. */
  | { key: string; op: 'present' }
  /** The key exists and was last written at exactly this revision. */
  | { key: string; op: 'modRevision'; equals: string };

export type KvOp =
  | { type: 'put'; key: string; value: string; lease?: string }
  | { type: 'delete'; key: string };

export interface KvTxnResult {
  succeeded: boolean;
  /** Store revision after the transaction (or the current one when it failed). */
  revision: string;
  /** When it failed: the current entries of the keys named in `readOnFailure`. */
  reads?: (KvEntry | undefined)[];
}

export interface KvEvent {
  type: 'put' | 'delete';
  key: string;
  /** Present for put. */
  value?: string;
  modRevision: string;
}

export interface KvWatchHandlers {
  /** Events in revision order; `revision` is the store revision they bring the watcher to. */
  onEvents(events: KvEvent[], revision: string): void;
  /**
   * The watch cannot resume from where it was (compaction, a restarted store, a Consul
   * index reset): the watcher must re-list and start a new watch.
   */
  onReset(reason: string): void;
  /** Connection lost / regained; the watch resumes by itself. */
  onConnectionChange?(connected: boolean): void;
}

export interface KvWatch {
  close(): Promise<void>;
}

export interface LeaseHandle {
  readonly id: string;
  readonly ttlSec: number;
  /**
   * Fired when the lease is gone (expired before a keep-alive reached the store, or revoked
   * elsewhere). Owners re-grant and re-put what they had on it.
   */
  onLost(listener: (reason: string) => void): void;
  /** Stops keep-alives and revokes the lease: its keys disappear now. */
  revoke(): Promise<void>;
  /** Stops keep-alives without revoking: the keys live on until the TTL runs out. */
  release(): void;
}

export interface KvStore {
  readonly backend: 'etcd' | 'consul' | 'memory';
  get(key: string): Promise<KvEntry | undefined>;
  /** All keys under a prefix, consistent at `revision`. */
  list(prefix: string): Promise<{ revision: string; entries: KvEntry[] }>;
  /**
   * How many keys were under a prefix at a revision (default: now), without reading them:
   * the cheap consistency check of a watch-fed copy. Throws when the revision was compacted
   * (the message says "compacted"). Optional: stores without it are re-listed instead.
   */
  count?(prefix: string, atRevision?: string): Promise<number>;
  /** All compares hold => all ops applied atomically; otherwise nothing is applied. */
  txn(compares: KvCompare[], ops: KvOp[], readOnFailure?: string[]): Promise<KvTxnResult>;
  /** A lease kept alive automatically until revoked or released (hosts, routers). */
  grantKeptLease(ttlSec: number): Promise<LeaseHandle>;
  /**
   * Keeps an existing lease alive again (a kept lease declared lost while etcd was slow or
   * away): undefined when the store says it is gone. Optional: without it, owners re-grant.
   */
  resumeLease?(leaseId: string, ttlSec: number): Promise<LeaseHandle | undefined>;
  /** A lease without automatic keep-alive (sessions: refreshed by traffic). Returns its id. */
  grantLease(ttlSec: number): Promise<string>;
  /** One keep-alive for each lease id; returns the remaining TTL (s) per id, 0 if gone. */
  keepAlive(leaseIds: string[]): Promise<Map<string, number>>;
  revokeLease(leaseId: string): Promise<void>;
  /** Events under a prefix strictly after `afterRevision`. */
  watch(prefix: string, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch>;
  /**
   * Events for every key in [start, end) (byte order) strictly after `afterRevision`. The
   * events of one transaction in the range arrive in one onEvents call (etcd: one watch
   * message), where a watch per prefix gets one call per prefix. Optional: stores without
   * it are watched per prefix.
   */
  watchRange?(start: string, end: string, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch>;
  /** Watch messages received since the store opened and their size in bytes (etcd: protobuf bytes). Optional. */
  watchTraffic?(): { messages: number; bytes: number };
  close(): Promise<void>;
}
