/**
 * KvStore on etcd v3 (the primary backend), through the etcd3 client. The only module
 * that constructs an etcd3 client (helpers: etcd-errors, etcd-lease, etcd-watch).
 *
 * Mapping: revisions are etcd's int64 revisions as decimal strings (etcd3 hands int64s out
 * as strings; we never pass them through Number). absent -> version == 0, present ->
 * version > 0, modRevision -> mod_revision ==. A txn is one etcd Txn; readOnFailure adds
 * range ops to its failure branch, so the reads are consistent with the failed compare.
 */
import { readFileSync } from 'node:fs';
import { Etcd3, Range } from 'etcd3';
import type { IKeyValue, IOptions, IRequestOp, ICompare } from 'etcd3';
import type { KvCompare, KvEntry, KvOp, KvStore, KvTxnResult, KvWatch, KvWatchHandlers, LeaseHandle } from './kv.js';
import { mapEtcdError } from './etcd-errors.js';
import { EtcdKeptLease, KeptLeaseLoop, closedError, keepAliveBatch } from './etcd-lease.js';
import { EtcdWatch, type WatchTraffic, type WatchedKeys } from './etcd-watch.js';
import { etcdFaultHandling } from './etcd-policy.js';
import { RegistryError, unavailable } from './errors.js';

export interface EtcdKvOptions {
  /** Client URLs, e.g. ['http://127.0.0.1:2379']; https:// with `tls`. */
  endpoints: string[];
  /** Each value is a file path or PEM text. `ca` alone = server verification only. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  auth?: { username: string; password: string };
  /**
   * Bound on waiting for a connection (default 5000): watch creation gives up after it, and
   * gRPC re-dials a lost member at least this often. (etcd3 1.1 ignores its own dialTimeout.)
   */
  dialTimeoutMs?: number;
  /** Deadline of each unary call and of one keepAlive() batch (default 5000). */
  requestTimeoutMs?: number;
  /** Page size of list() (default 1000); pages are read at one revision. */
  listPageSize?: number;
}

const pem = (v: string | Buffer | undefined, what: string): Buffer | undefined => {
  if (v === undefined) return undefined;
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return readFileSync(v);
  } catch (err) {
    throw new RegistryError('WARMPOOL_INVALID_CONFIG', `etcd: cannot read tls.${what} from ${v}: ${(err as Error).message}`, { cause: err });
  }
};

/** Largest message accepted from etcd (bytes): 256 MiB. */
const MAX_RECEIVE_BYTES = 256 * 1024 * 1024;

/** Watch-stream reconnect backoff: 100 ms doubling to 2 s, with jitter (etcd3's default climbs to 30 s). */
type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;
const watchBackoff = (ms = 100): WatchBackoff => ({
  duration: ms / 2 + Math.random() * (ms / 2),
  next: () => watchBackoff(Math.min(ms * 2, 2000)),
});

function toEntry(kv: IKeyValue): KvEntry {
  const entry: KvEntry = { key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision) };
  const lease = String(kv.lease ?? '0');
  if (lease !== '0') entry.lease = lease;
  return entry;
}

function toCompare(c: KvCompare): ICompare {
  const key = Buffer.from(c.key);
  switch (c.op) {
    case 'absent': return { key, target: 'Version', result: 'Equal', version: 0 };
    case 'present': return { key, target: 'Version', result: 'Greater', version: 0 };
    case 'modRevision': return { key, target: 'Mod', result: 'Equal', mod_revision: c.equals };
  }
}

function toOp(op: KvOp): IRequestOp {
  if (op.type === 'put') {
    return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), ...(op.lease ? { lease: op.lease } : {}) } };
  }
  return { request_delete_range: { key: Buffer.from(op.key) } };
}

export class EtcdKvStore implements KvStore {
  readonly backend = 'etcd' as const;
  private readonly client: Etcd3;
  private readonly timeoutMs: number;
  private readonly dialTimeoutMs: number;
  private readonly pageSize: number;
  private closed = false;
  private readonly leases = new Set<EtcdKeptLease>();
  private readonly keeper: KeptLeaseLoop;
  private readonly watches = new Set<EtcdWatch>();
  private readonly traffic: WatchTraffic = { messages: 0, bytes: 0 };

  constructor(opts: EtcdKvOptions) {
    if (!opts.endpoints?.length) throw new RegistryError('WARMPOOL_INVALID_CONFIG', 'etcd: at least one endpoint is required');
    this.timeoutMs = opts.requestTimeoutMs ?? 5000;
    this.dialTimeoutMs = opts.dialTimeoutMs ?? 5000;
    this.pageSize = opts.listPageSize ?? 1000;
    const ca = pem(opts.tls?.ca, 'ca');
    const cert = pem(opts.tls?.cert, 'cert');
    const key = pem(opts.tls?.key, 'key');
    if ((cert === undefined) !== (key === undefined)) {
      throw new RegistryError('WARMPOOL_INVALID_CONFIG', 'etcd: tls.cert and tls.key must be given together');
    }
    const timeoutMs = this.timeoutMs;
    const options: IOptions = {
      hosts: opts.endpoints,
      // Streams (watch, keep-alive) live long; every unary call gets a deadline.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
      // Detect half-open connections (partitions) on long-lived streams. etcd accepts pings
      // every 5 s or slower (--grpc-keepalive-min-time).
      grpcOptions: {
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        'grpc.max_reconnect_backoff_ms': this.dialTimeoutMs,
        // gRPC's 4 MiB default is not a limit on what etcd may legitimately send: one
        // revision's events (a lease expiring with thousands of keys) arrive in one watch
        // response. Lists are paged (listPageSize), so only watches need the room.
        'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
      },
      faultHandling: { watchBackoff: watchBackoff(), ...etcdFaultHandling(opts.endpoints.length) },
    };
    if (ca || cert) {
      options.credentials = {
        // grpc-js falls back to the system roots when no CA is given.
        rootCertificate: ca ?? (undefined as unknown as Buffer),
        ...(key ? { privateKey: key } : {}),
        ...(cert ? { certChain: cert } : {}),
      };
    }
    if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
    this.client = new Etcd3(options);
    this.keeper = new KeptLeaseLoop(this.client, this.timeoutMs);
  }

  private check(): void {
    if (this.closed) throw closedError();
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.check();
    try {
      const res = await this.client.kv.range({ key: Buffer.from(key) });
      const kv = res.kvs[0];
      return kv ? toEntry(kv) : undefined;
    } catch (err) {
      throw mapEtcdError(err, `get ${key}`);
    }
  }

  async list(prefix: string): Promise<{ revision: string; entries: KvEntry[] }> {
    this.check();
    const range = Range.prefix(prefix);
    const entries: KvEntry[] = [];
    let revision: string | undefined;
    let from = range.start;
    try {
      for (;;) {
        const res = await this.client.kv.range({
          key: from,
          range_end: range.end,
          limit: this.pageSize,
          ...(revision ? { revision } : {}),
        });
        revision ??= String(res.header.revision);
        for (const kv of res.kvs) entries.push(toEntry(kv));
        const last = res.kvs[res.kvs.length - 1];
        if (!res.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    } catch (err) {
      throw mapEtcdError(err, `list ${prefix}`);
    }
    return { revision: revision ?? '0', entries };
  }

  async count(prefix: string, atRevision?: string): Promise<number> {
    this.check();
    const range = Range.prefix(prefix);
    try {
      // count_only: etcd answers from its key index, without reading or sending values.
      const res = await this.client.kv.range({
        key: range.start, range_end: range.end, count_only: true, ...(atRevision ? { revision: atRevision } : {}),
      });
      return Number(res.count);
    } catch (err) {
      throw mapEtcdError(err, `count ${prefix}`);
    }
  }

  async txn(compares: KvCompare[], ops: KvOp[], readOnFailure: string[] = []): Promise<KvTxnResult> {
    this.check();
    try {
      const res = await this.client.kv.txn({
        compare: compares.map(toCompare),
        success: ops.map(toOp),
        failure: readOnFailure.map((key) => ({ request_range: { key: Buffer.from(key) } })),
      });
      const revision = String(res.header.revision);
      if (res.succeeded) return { succeeded: true, revision };
      const reads = readOnFailure.map((_, i) => {
        const kv = res.responses[i]?.response_range?.kvs[0];
        return kv ? toEntry(kv) : undefined;
      });
      return { succeeded: false, revision, reads };
    } catch (err) {
      throw mapEtcdError(err, `txn on ${[...compares.map((c) => c.key), ...ops.map((o) => o.key)][0] ?? '(nothing)'}`);
    }
  }

  async grantKeptLease(ttlSec: number): Promise<LeaseHandle> {
    this.check();
    const ttl = Math.max(1, Math.ceil(ttlSec));
    const since = Date.now();
    let id: string;
    try {
      id = String((await this.client.leaseClient.leaseGrant({ TTL: ttl })).ID);
    } catch (err) {
      throw mapEtcdError(err, 'grant kept lease');
    }
    return this.keep(id, ttl, since);
  }

  async resumeLease(leaseId: string, ttlSec: number): Promise<LeaseHandle | undefined> {
    this.check();
    const since = Date.now();
    const ttl = await this.keeper.probe(leaseId);
    if (ttl === undefined) throw unavailable(new Error(`keep-alive of lease ${leaseId} unanswered`));
    if (ttl <= 0) return undefined;
    return this.keep(leaseId, Math.max(1, Math.ceil(ttlSec)), since);
  }

  private keep(id: string, ttl: number, since: number): LeaseHandle {
    const handle = new EtcdKeptLease(this.client, id, ttl, since, (l) => { this.leases.delete(l); this.keeper.delete(l); });
    this.leases.add(handle);
    this.keeper.add(handle);
    return handle;
  }

  async grantLease(ttlSec: number): Promise<string> {
    this.check();
    try {
      const res = await this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlSec)) });
      return String(res.ID);
    } catch (err) {
      throw mapEtcdError(err, 'grant lease');
    }
  }

  async keepAlive(leaseIds: string[]): Promise<Map<string, number>> {
    this.check();
    return keepAliveBatch(this.client, leaseIds, this.timeoutMs);
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.check();
    try {
      await this.client.leaseClient.leaseRevoke({ ID: leaseId });
    } catch (err) {
      const mapped = mapEtcdError(err, `revoke lease ${leaseId}`);
      if (mapped.code === 'WARMPOOL_LEASE_LOST') return; // already gone: the goal is reached
      throw mapped;
    }
  }

  watch(prefix: string, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch> {
    return this.startWatch({ start: prefix }, afterRevision, handlers);
  }

  watchRange(start: string, end: string, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch> {
    return this.startWatch({ start, end }, afterRevision, handlers);
  }

  watchTraffic(): WatchTraffic {
    return { ...this.traffic };
  }

  private async startWatch(keys: WatchedKeys, afterRevision: string, handlers: KvWatchHandlers): Promise<KvWatch> {
    this.check();
    const opts = { timeoutMs: this.dialTimeoutMs, traffic: this.traffic };
    const w = await EtcdWatch.start(this.client, keys, afterRevision, handlers, opts, (x) => this.watches.delete(x));
    if (this.closed) {
      await w.close();
      throw closedError();
    }
    this.watches.add(w);
    return w;
  }

  /** Closes watches, stops keep-alives (kept leases are released, not revoked), closes the client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.leases]) l.release();
    this.keeper.close();
    await Promise.all([...this.watches].map((w) => w.close()));
    this.client.close();
  }
}
