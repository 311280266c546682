/**
 * KvStore on a Consul agent's KV store (the alternative backend), through the `consul`
 * client (helpers: consul-http, consul-watch, consul-lease).
 *
 * Mapping and its limits:
 * - Keys: ours start with "/", Consul's never do; the leading "/" is stripped on the way in
 *   and added back on the way out. Keys must start with "/".
 * - Revisions are Consul raft indexes (ModifyIndex, X-Consul-Index) as decimal strings.
 *   list() returns the prefix's index (the highest ModifyIndex under it, tombstones included).
 * - txn = one /v1/txn (at most 64 Consul ops): absent -> check-not-exists, present -> get
 *   (fails when missing), modRevision -> check-index. put = delete + set (no lease) or
 *   delete + lock (lease = session): the delete first drops any other session's lock, so a
 *   put replaces the key's lease exactly like in etcd. readOnFailure is a second, read-only
 *   txn: consistent in itself, but read just after the failed one.
 * - Leases are sessions (Behavior=delete, LockDelay=0s). Consul's TTL floor is 10 s (TTLs
 *   below are raised to 10 s; LeaseHandle.ttlSec shows the effective one) and Consul
 *   invalidates a session lazily, between TTL and 2 x TTL after its last renewal.
 * - watch = blocking queries diffed against the previous answer (see consul-watch.ts): a
 *   watch needs the exact state at its start revision, which list() provides; watching
 *   from a revision no recent list() returned, after changes, ends in onReset.
 */
import type { KvCompare, KvEntry, KvOp, KvStore, KvTxnResult, KvWatch, KvWatchHandlers, LeaseHandle } from './kv.js';
import { type ConsulItem, type ConsulTxnOp, ConsulHttp, UUID, mapConsulError } from './consul-http.js';
import { ConsulKeptLease } from './consul-lease.js';
import { ConsulWatch } from './consul-watch.js';
import { RegistryError } from './errors.js';

export interface ConsulKvOptions {
  /** The agent's HTTP API, default http://127.0.0.1:8500. */
  url?: string;
  /** ACL token (sent as X-Consul-Token). */
  token?: string;
  /** Per-request timeout of non-blocking calls (default 5000). */
  requestTimeoutMs?: number;
  /** How long one blocking query of a watch waits (default 30 s). */
  watchWaitSec?: number;
  /** Concurrent session renewals in keepAlive() (default 32). */
  keepAliveConcurrency?: number;
  /** Name given to sessions (default "warmpool"), visible in `consul` tooling. */
  sessionName?: string;
}

/** Consul rejects session TTLs outside 10 s .. 24 h. */
export const CONSUL_MIN_TTL_SEC = 10;
const CONSUL_MAX_TTL_SEC = 86_400;
/** Consul 1.8 refuses transactions with more operations. */
const CONSUL_MAX_TXN_OPS = 64;
/** How many list() answers are kept as watch baselines. */
const SNAPSHOTS = 8;

const closedError = (): RegistryError => new RegistryError('WARMPOOL_REGISTRY_CLOSED', 'Consul store is closed');

function toConsulKey(key: string): string {
  if (key === '') return '';
  if (!key.startsWith('/')) throw new RegistryError('WARMPOOL_INVALID_CONFIG', `registry keys must start with "/": ${JSON.stringify(key)}`);
  return key.slice(1);
}

function toEntry(item: ConsulItem): KvEntry {
  const entry: KvEntry = { key: `/${item.Key}`, value: item.Value ?? '', modRevision: String(item.ModifyIndex) };
  if (item.Session) entry.lease = item.Session;
  return entry;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface Snapshot { prefix: string; index: bigint; entries: KvEntry[] }

export class ConsulKvStore implements KvStore {
  readonly backend = 'consul' as const;
  private readonly http: ConsulHttp;
  private readonly opts: Required<Omit<ConsulKvOptions, 'token' | 'url'>>;
  private closed = false;
  private snapshots: Snapshot[] = [];
  private readonly leases = new Set<ConsulKeptLease>();
  private readonly watches = new Set<ConsulWatch>();

  constructor(opts: ConsulKvOptions = {}) {
    this.opts = {
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      watchWaitSec: opts.watchWaitSec ?? 30,
      keepAliveConcurrency: opts.keepAliveConcurrency ?? 32,
      sessionName: opts.sessionName ?? 'warmpool',
    };
    this.http = new ConsulHttp(opts.url ?? 'http://127.0.0.1:8500', opts.token, this.opts.requestTimeoutMs);
  }

  private check(): void {
    if (this.closed) throw closedError();
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.check();
    try {
      const { items } = await this.http.read(toConsulKey(key), { recurse: false });
      const item = items.find((i) => i.Key === toConsulKey(key));
      return item ? toEntry(item) : undefined;
    } catch (err) {
      throw mapConsulError(err, `get ${key}`);
    }
  }

  async list(prefix: string): Promise<{ revision: string; entries: KvEntry[] }> {
    this.check();
    let answer;
    try {
      answer = await this.http.read(toConsulKey(prefix), { recurse: true });
    } catch (err) {
      throw mapConsulError(err, `list ${prefix}`);
    }
    const entries = answer.items.map(toEntry).filter((e) => e.key.startsWith(prefix));
    this.remember({ prefix, index: answer.index, entries: entries.map((e) => ({ ...e })) });
    return { revision: answer.index.toString(), entries };
  }

  private remember(s: Snapshot): void {
    this.snapshots = [s, ...this.snapshots.filter((x) => !(x.prefix === s.prefix && x.index === s.index))].slice(0, SNAPSHOTS);
  }

  async txn(compares: KvCompare[], ops: KvOp[], readOnFailure: string[] = []): Promise<KvTxnResult> {
    this.check();
    const wire: ConsulTxnOp[] = [];
    for (const c of compares) {
      const Key = toConsulKey(c.key);
      if (c.op === 'absent') wire.push({ KV: { Verb: 'check-not-exists', Key } });
      else if (c.op === 'present') wire.push({ KV: { Verb: 'get', Key } });
      else wire.push({ KV: { Verb: 'check-index', Key, Index: Number(c.equals) } });
    }
    const compareOps = wire.length;
    for (const op of ops) {
      const Key = toConsulKey(op.key);
      wire.push({ KV: { Verb: 'delete', Key } });
      if (op.type === 'put') {
        if (op.lease !== undefined && !UUID.test(op.lease)) {
          throw new RegistryError('WARMPOOL_LEASE_LOST', `txn on ${op.key}: ${JSON.stringify(op.lease)} is not a Consul session id`);
        }
        wire.push(op.lease ? { KV: { Verb: 'lock', Key, Value: b64(op.value), Session: op.lease } } : { KV: { Verb: 'set', Key, Value: b64(op.value) } });
      }
    }
    if (wire.length > CONSUL_MAX_TXN_OPS) {
      throw new RegistryError('WARMPOOL_INVALID_CONFIG', `a Consul transaction holds at most ${CONSUL_MAX_TXN_OPS} operations; this one needs ${wire.length} (each put costs 2)`);
    }
    const what = `txn on ${[...compares, ...ops][0]?.key ?? '(nothing)'}`;
    try {
      if (wire.length === 0) return { succeeded: true, revision: (await this.http.currentIndex()).toString() };
      const outcome = await this.http.txn(wire);
      if (outcome.ok) {
        // Results of set/lock carry the transaction's index; checks carry older ones.
        let max = 0n;
        for (const r of outcome.results) if (r.KV && BigInt(r.KV.ModifyIndex) > max) max = BigInt(r.KV.ModifyIndex);
        const wrote = ops.some((o) => o.type === 'put');
        return { succeeded: true, revision: (wrote ? max : await this.http.currentIndex()).toString() };
      }
      if (outcome.errors.some((e) => e.OpIndex < compareOps)) {
        const [revision, reads] = await Promise.all([this.http.currentIndex(), this.readKeys(readOnFailure)]);
        return { succeeded: false, revision: revision.toString(), ...(readOnFailure.length ? { reads } : { reads: [] }) };
      }
      const msg = outcome.errors.map((e) => e.What).join('; ');
      if (/session/i.test(msg)) throw new RegistryError('WARMPOOL_LEASE_LOST', `${what}: ${msg}`);
      throw new RegistryError('WARMPOOL_INVALID_CONFIG', `${what}: Consul refused the transaction: ${msg}`);
    } catch (err) {
      throw mapConsulError(err, what);
    }
  }

  /** Current entries of some keys, read in one read-only transaction (consistent together). */
  private async readKeys(keys: string[]): Promise<(KvEntry | undefined)[]> {
    if (keys.length === 0) return [];
    // get-tree never fails on a missing key (a get would abort the whole read).
    const outcome = await this.http.txn(keys.map((k) => ({ KV: { Verb: 'get-tree', Key: toConsulKey(k) } })));
    if (!outcome.ok) throw new Error(`read-only txn failed: ${outcome.errors.map((e) => e.What).join('; ')}`);
    const byKey = new Map<string, KvEntry>();
    for (const r of outcome.results) {
      // Unlike KV reads, the client does not decode txn results: Value is still base64.
      if (r.KV) byKey.set(`/${r.KV.Key}`, toEntry({ ...r.KV, Value: r.KV.Value === null ? null : Buffer.from(r.KV.Value, 'base64').toString() }));
    }
    return keys.map((k) => byKey.get(k));
  }

  private effectiveTtl(ttlSec: number): number {
    return Math.min(CONSUL_MAX_TTL_SEC, Math.max(CONSUL_MIN_TTL_SEC, Math.ceil(ttlSec)));
  }

  async grantKeptLease(ttlSec: number): Promise<LeaseHandle> {
    this.check();
    const ttl = this.effectiveTtl(ttlSec);
    let id: string;
    try {
      id = await this.http.createSession(ttl, this.opts.sessionName);
    } catch (err) {
      throw mapConsulError(err, 'create session');
    }
    const lease = new ConsulKeptLease(this.http, id, ttl, (l) => this.leases.delete(l));
    this.leases.add(lease);
    return lease;
  }

  async grantLease(ttlSec: number): Promise<string> {
    this.check();
    try {
      return await this.http.createSession(this.effectiveTtl(ttlSec), this.opts.sessionName);
    } catch (err) {
      throw mapConsulError(err, 'create session');
    }
  }

  async keepAlive(leaseIds: string[]): Promise<Map<string, number>> {
    this.check();
    const out = new Map<string, number>();
    const queue = [...new Set(leaseIds)];
    const worker = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        out.set(id, UUID.test(id) ? await this.http.renewSession(id) : 0);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.opts.keepAliveConcurrency, queue.length) }, worker));
    } catch (err) {
      throw mapConsulError(err, 'renew sessions');
    }
    return out;
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.check();
    if (!UUID.test(leaseId)) return; // cannot exist
    try {
      await this.http.destroySession(leaseId);
    } catch (err) {
      throw mapConsulError(err, `destroy session ${leaseId}`);
    }
  }

  async watch(prefix: string, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch> {
    this.check();
    const after = BigInt(afterRevision);
    const base = this.snapshots.find((s) => s.index === after && prefix.startsWith(s.prefix));
    let snapshot: Map<string, KvEntry>;
    let index = after;
    let seen = false;
    let resetReason: string | undefined;
    if (base) {
      snapshot = new Map(base.entries.filter((e) => e.key.startsWith(prefix)).map((e) => [e.key, e]));
    } else {
      // No baseline at that revision: usable only if nothing changed under the prefix since.
      let answer;
      try {
        answer = await this.http.read(toConsulKey(prefix), { recurse: true });
      } catch (err) {
        throw mapConsulError(err, `watch ${prefix}`);
      }
      snapshot = new Map(answer.items.map(toEntry).filter((e) => e.key.startsWith(prefix)).map((e) => [e.key, e]));
      index = answer.index;
      seen = true;
      if (answer.index > after) {
        resetReason = `cannot replay Consul changes under ${prefix} after ${afterRevision} (now ${answer.index}) without a list() at that revision`;
      }
    }
    const w = new ConsulWatch(this.http, prefix, snapshot, index, seen, handlers, {
      waitSec: this.opts.watchWaitSec,
      backoff: { initialMs: 100, maxMs: 2000 },
      toConsulKey,
      toEntry,
    }, (x) => this.watches.delete(x));
    this.watches.add(w);
    if (resetReason) w.reset(resetReason);
    else w.start();
    return w;
  }

  /** Stops watches and session renewals (sessions are left to expire, not destroyed). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.leases]) l.release();
    await Promise.all([...this.watches].map((w) => w.close()));
    this.http.close();
  }
}
