/**
 * The protobuf size (bytes) of a watch response as etcd sent it, computed from the message
 * etcd3 decoded (int64s as decimal strings, enums as names, defaults filled in): what a part
 * receives on its watch stream, without gRPC's 5-byte frame or HTTP/2's framing. Private
 * helper of etcd-watch.ts; the count it feeds is `EtcdKvStore.watchTraffic()`.
 *
 * Proto3 leaves out fields at their default (0, false, empty), so each field counts only
 * when set: a tag byte (every field number here is below 16, `events` = 11 included), then
 * a varint, or a length and the bytes. The sizes of large uint64s (cluster and member ids)
 * go through Number, which is exact enough for their varint length.
 */
import type { IWatchResponse } from 'etcd3';

type Int = string | number | null | undefined;
type Bytes = { length: number } | string | null | undefined;

/** Bytes of a varint holding `n` (non-negative). */
function varintLen(n: number): number {
  let bytes = 1;
  while (n >= 128) { n = Math.floor(n / 128); bytes++; }
  return bytes;
}

/** A varint field: tag + value, or nothing at 0. Negative int64s take 10 bytes. */
function intField(v: Int): number {
  const n = Number(v ?? 0);
  if (!n) return 0;
  return 1 + (n < 0 ? 10 : varintLen(n));
}

/** A length-delimited field (bytes, string, sub-message) of `len` bytes. */
function lenField(len: number): number {
  return 1 + varintLen(len) + len;
}

function bytesField(v: Bytes): number {
  if (v === null || v === undefined) return 0;
  const len = typeof v === 'string' ? Buffer.byteLength(v) : v.length;
  return len ? lenField(len) : 0;
}

interface DecodedKv {
  key?: Bytes; create_revision?: Int; mod_revision?: Int; version?: Int; value?: Bytes; lease?: Int;
}

function kvLen(kv: DecodedKv): number {
  return bytesField(kv.key) + intField(kv.create_revision) + intField(kv.mod_revision)
    + intField(kv.version) + bytesField(kv.value) + intField(kv.lease);
}

/** Bytes of one WatchResponse message (see the module comment). */
export function watchResponseBytes(res: IWatchResponse): number {
  const r = res as unknown as {
    header?: { cluster_id?: Int; member_id?: Int; revision?: Int; raft_term?: Int } | null;
    watch_id?: Int; created?: boolean; canceled?: boolean; compact_revision?: Int; cancel_reason?: string;
    fragment?: boolean;
    events?: { type?: string; kv?: DecodedKv | null; prev_kv?: DecodedKv | null }[];
  };
  let size = 0;
  const h = r.header;
  if (h) size += lenField(intField(h.cluster_id) + intField(h.member_id) + intField(h.revision) + intField(h.raft_term));
  size += intField(r.watch_id) + (r.created ? 2 : 0) + (r.canceled ? 2 : 0) + intField(r.compact_revision)
    + bytesField(r.cancel_reason) + (r.fragment ? 2 : 0);
  for (const ev of r.events ?? []) {
    let e = ev.type === 'Delete' ? 2 : 0;
    if (ev.kv) e += lenField(kvLen(ev.kv));
    if (ev.prev_kv) e += lenField(kvLen(ev.prev_kv));
    size += lenField(e);
  }
  return size;
}
