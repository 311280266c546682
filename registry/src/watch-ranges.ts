/**
 * Which key ranges a registry cache watches. etcd sends the events of one revision (one
 * transaction) that fall in one watch's range as one message, and a watch per prefix turns
 * a claim (a claim record and a session record, under two prefixes) into two messages, each
 * paying the watch stream's fixed cost. So the followed prefixes are grouped into as few
 * contiguous byte ranges as the layout allows, one watch each.
 *
 * In key order the layout reads: claims/ cluster demand/ drain/ hosts/ idempotency/
 * instances/ services/ sessions/ slots/ tombstones/. A range may span a prefix the cache does
 * not follow only when that prefix is BRIDGEABLE: its keys are written only in transactions
 * that also write a followed key of the same range, so spanning it adds bytes to messages
 * that are sent anyway, never a message. Its events are dropped on arrival. Any other
 * unfollowed prefix (warm slots, for a router) ends a range.
 */
import type { KeyKind } from './keys.js';

/**
 * Idempotency keys are put by a claim and deleted by the end of its session, each time in
 * the transaction that writes the claim and the session record.
 */
export const BRIDGEABLE_KINDS: readonly KeyKind[] = ['idempotency'];

/**
 * One watch: its followed prefixes (in key order) and, for more than one, the byte range
 * [start, end) that covers them. A single prefix is watched as a prefix.
 */
export interface WatchRange { prefixes: string[]; start: string; end?: string }

/**
 * The first key after every key that starts with `prefix`. Only for prefixes whose last
 * character is ASCII (every layout prefix ends in "/" or "cluster"); undefined otherwise.
 */
export function prefixEnd(prefix: string): string | undefined {
  const last = prefix.charCodeAt(prefix.length - 1);
  if (!(last >= 0 && last < 0x7f)) return undefined;
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/**
 * Groups `followed` prefixes into contiguous ranges of the layout.
 *
 * @param followed prefixes the cache lists and watches (full keys, e.g. "/warmpool/claims/").
 * @param layout every prefix of the layout, followed or not.
 * @param bridgeable prefixes a range may span although nobody follows them.
 * @returns the ranges in key order; every followed prefix in exactly one. A prefix that
 *   another prefix starts with, or one without a computable end, gets a range of its own.
 */
export function planWatchRanges(followed: readonly string[], layout: readonly string[], bridgeable: readonly string[]): WatchRange[] {
  const want = new Set(followed);
  const bridge = new Set(bridgeable);
  const all = [...new Set([...layout, ...followed])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const alone = (p: string): boolean => prefixEnd(p) === undefined || all.some((q) => q !== p && q.startsWith(p));
  const out: WatchRange[] = [];
  let current: string[] = [];
  const close = (): void => {
    if (current.length > 1) out.push({ prefixes: current, start: current[0]!, end: prefixEnd(current[current.length - 1]!)! });
    else if (current.length) out.push({ prefixes: current, start: current[0]! });
    current = [];
  };
  for (const p of all) {
    if (want.has(p) && alone(p)) {
      close();
      out.push({ prefixes: [p], start: p });
    } else if (want.has(p)) {
      current.push(p);
    } else if (!bridge.has(p)) {
      close();
    }
  }
  close();
  return out;
}
