import { randomBytes, randomInt } from 'node:crypto';

/**
 * The fault suite's client side: a bounded number of client loops, each one a chat user
 * that opens a session, talks to it through random routers, and ends it. A client retries
 * a failed request on another router a few times (what a client behind a load balancer or
 * DNS round robin does); a session fails when that does not help.
 */

export interface WorkloadOptions {
  /** Router base URLs; the client picks at random (dead ones included, like stale DNS). */
  routers: () => string[];
  service: string;
  clients: number;
  /** Chat requests per session. */
  turns: number;
  /** Pause between turns and between sessions (ms, random in [min, max]). */
  thinkMs: [number, number];
  pauseMs: [number, number];
  /** Attempts per request, each on another router. */
  tries: number;
  /** ?wait= for session creation (s). */
  waitSec: number;
  now?: () => number;
}

export type FailureReason =
  /** No session after `tries` attempts. */
  | 'create'
  /** The session ended under the client (410/404): its instance died. */
  | 'ended'
  /** Every router answered 5xx or nothing for one request. */
  | 'unreachable'
  /** A response came from another instance than the session's. */
  | 'mismatch'
  /** Anything else (unexpected 4xx, bad body). */
  | 'other';

export interface SessionLog {
  sessionId: string;
  instanceId: string;
  /** Client clock (ms): from the create response to the end (delete answered, or failure). */
  start: number;
  end: number;
  /** X-Instance-Id values seen on this session's responses. */
  seen: Set<string>;
  /** Client clock (ms) of the last 200 from the instance. */
  lastOk?: number;
  ok: boolean;
  reason?: FailureReason;
  detail?: string;
}

export interface WorkloadStats {
  attempted: number;
  served: number;
  failed: number;
  failures: Partial<Record<FailureReason, number>>;
  /** Requests that needed another router (recovered by retry). */
  retried: number;
  /** Sessions whose DELETE never succeeded (they expire with their idle lease). */
  deleteFailed: number;
  /** Sample failure details (first few), for the report. */
  samples: string[];
  /** Time to a created session (ms), for every successful create: high values mean clients waited for a boot. */
  createMs: number[];
  /** When the slowest create was asked (epoch ms). */
  slowestCreateAt?: number;
}

interface Attempt {
  status: number;
  headers: Headers | undefined;
  body: unknown;
  error?: string;
}

const pick = ([a, b]: [number, number]): number => (b > a ? randomInt(a, b + 1) : a);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function call(url: string, init: RequestInit, timeoutMs: number): Promise<Attempt> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: unknown = text;
    try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, body };
  } catch (err) {
    const e = err as { name?: string; message?: string; cause?: { code?: string } };
    return { status: 0, headers: undefined, body: undefined, error: e.cause?.code ?? e.name ?? e.message ?? 'error' };
  }
}

/** Retry on transport errors and 5xx (another router may do better); not on 4xx. */
const retryable = (a: Attempt): boolean => a.status === 0 || a.status >= 500;

function errCode(a: Attempt): string {
  if (a.status === 0) return a.error ?? 'network';
  const code = (a.body as { error?: { code?: string } } | undefined)?.error?.code;
  return `${a.status}${code ? ` ${code}` : ''}`;
}

export class Workload {
  readonly sessions: SessionLog[] = [];
  readonly stats: WorkloadStats = { attempted: 0, served: 0, failed: 0, failures: {}, retried: 0, deleteFailed: 0, samples: [], createMs: [] };
  private stopping = false;
  private loops: Promise<void>[] = [];
  private readonly now: () => number;

  constructor(private readonly opts: WorkloadOptions) {
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    for (let i = 0; i < this.opts.clients; i++) this.loops.push(this.loop(i));
  }

  /** Lets every client finish its current session, then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  /** Served sessions so far (for "new sessions succeed" checks). */
  servedSince(t: number): number {
    return this.sessions.filter((s) => s.ok && s.start >= t).length;
  }

  private async loop(_i: number): Promise<void> {
    // Clients start spread out, not in lock step.
    await sleep(randomInt(0, 500));
    while (!this.stopping) {
      const failedBefore = this.stats.failed;
      await this.oneSession();
      // A client that just failed backs off a little before trying again.
      await sleep(pick(this.opts.pauseMs) + (this.stats.failed > failedBefore ? 1000 : 0));
    }
  }

  /** One request with up to `tries` attempts on different routers. */
  private async request(path: string, init: RequestInit, timeoutMs: number): Promise<{ last: Attempt; attempts: number }> {
    const routers = this.opts.routers();
    const order = [...routers].sort(() => Math.random() - 0.5);
    let last: Attempt = { status: 0, headers: undefined, body: undefined, error: 'no router' };
    for (let k = 0; k < this.opts.tries; k++) {
      const base = order[k % order.length]!;
      last = await call(`${base}${path}`, init, timeoutMs);
      if (!retryable(last)) return { last, attempts: k + 1 };
      if (k + 1 < this.opts.tries) await sleep(150 * (k + 1));
    }
    return { last, attempts: this.opts.tries };
  }

  private fail(log: SessionLog | undefined, reason: FailureReason, detail: string): void {
    this.stats.failed++;
    this.stats.failures[reason] = (this.stats.failures[reason] ?? 0) + 1;
    // A few samples of each kind of failure, with the session and the time, for the report.
    if (this.stats.samples.filter((x) => x.startsWith(`${reason}:`)).length < 3) {
      this.stats.samples.push(`${reason}: ${detail}${log ? ` (session ${log.sessionId.slice(0, 8)} on ${log.instanceId})` : ''} at ${new Date(this.now()).toISOString()}`);
    }
    if (log) {
      log.ok = false;
      log.reason = reason;
      log.detail = detail;
      log.end = this.now();
    }
  }

  private async oneSession(): Promise<void> {
    this.stats.attempted++;
    const json = { 'content-type': 'application/json' };
    // One Idempotency-Key per logical session: a retried create on another router returns
    // the same session instead of claiming a second instance.
    const key = randomBytes(12).toString('hex');
    const asked = this.now();
    const created = await this.request(`/v1/sessions?wait=${this.opts.waitSec}`, {
      method: 'POST', headers: { ...json, 'idempotency-key': key }, body: JSON.stringify({ service: this.opts.service }),
    }, (this.opts.waitSec + 5) * 1000);
    if (created.attempts > 1 && created.last.status === 201) this.stats.retried++;
    if (created.last.status !== 201) {
      this.fail(undefined, created.last.status >= 400 && created.last.status < 500 ? 'other' : 'create', errCode(created.last));
      return;
    }
    const took = this.now() - asked;
    if (took > Math.max(0, ...this.stats.createMs)) this.stats.slowestCreateAt = asked;
    this.stats.createMs.push(took);
    const body = created.last.body as { sessionId: string; instanceId: string };
    const log: SessionLog = { sessionId: body.sessionId, instanceId: body.instanceId, start: this.now(), end: 0, seen: new Set(), ok: false };
    this.sessions.push(log);

    let failed = false;
    for (let turn = 0; turn < this.opts.turns && !failed; turn++) {
      if (turn > 0) await sleep(pick(this.opts.thinkMs));
      const r = await this.request(`/v1/sessions/${log.sessionId}/proxy/v1/chat/completions`, {
        method: 'POST', headers: json,
        body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: `turn ${turn}` }] }),
      }, 10_000);
      const a = r.last;
      const seen = a.headers?.get('x-instance-id');
      if (seen) log.seen.add(seen);
      if (a.status === 200) {
        log.lastOk = this.now();
        if (r.attempts > 1) this.stats.retried++;
        if (seen !== log.instanceId) { this.fail(log, 'mismatch', `session ${log.sessionId.slice(0, 8)} answered by ${seen ?? '(none)'} not ${log.instanceId}`); failed = true; }
        continue;
      }
      failed = true;
      if (a.status === 410 || a.status === 404) this.fail(log, 'ended', `${errCode(a)} at turn ${turn}`);
      else if (retryable(a)) this.fail(log, 'unreachable', `${errCode(a)} at turn ${turn} after ${r.attempts} tries`);
      else this.fail(log, 'other', `${errCode(a)} at turn ${turn}`);
    }

    const del = await this.request(`/v1/sessions/${log.sessionId}`, { method: 'DELETE' }, 10_000);
    const deleted = del.last.status === 204 || del.last.status === 410 || del.last.status === 404;
    if (!deleted) this.stats.deleteFailed++;
    // The instance is the session's until the delete is answered.
    log.end = this.now();
    if (!failed) {
      log.ok = true;
      this.stats.served++;
    }
  }
}

export interface ClientCheck {
  /** Instances that two sessions used while both were active. */
  double: string[];
  /** Instances handed to a second session after the first ended (one instance, one session). */
  reused: string[];
  details: string[];
}

/**
 * Client-side view of assignment: every instance id a session was given or heard from,
 * with the interval the session was live as the client saw it: from its creation to its
 * delete when it went well, else to its last good answer (a session the mesh ended is not
 * live after that, even if the client learns it later). Two sessions on one instance with
 * overlapping intervals is a double assignment; one after the other is a reuse.
 */
function liveUntil(s: SessionLog, now: number): number {
  if (s.ok) return s.end || now;
  return s.lastOk ?? s.start;
}

export function checkClientAssignments(sessions: readonly SessionLog[], now: number): ClientCheck {
  const byInstance = new Map<string, SessionLog[]>();
  for (const s of sessions) {
    for (const id of new Set([s.instanceId, ...s.seen])) {
      const list = byInstance.get(id) ?? [];
      list.push(s);
      byInstance.set(id, list);
    }
  }
  const double: string[] = [];
  const reused: string[] = [];
  const details: string[] = [];
  for (const [id, list] of byInstance) {
    const distinct = [...new Map(list.map((s) => [s.sessionId, s])).values()];
    if (distinct.length < 2) continue;
    let overlap = false;
    for (let a = 0; a < distinct.length; a++) {
      for (let b = a + 1; b < distinct.length; b++) {
        const x = distinct[a]!;
        const y = distinct[b]!;
        if (x.start <= liveUntil(y, now) && y.start <= liveUntil(x, now)) overlap = true;
      }
    }
    (overlap ? double : reused).push(id);
    if (details.length < 5) {
      details.push(`${id}: ${distinct.map((s) => `${s.sessionId.slice(0, 8)} ${new Date(s.start).toISOString().slice(11, 23)}-${s.end ? new Date(s.end).toISOString().slice(11, 23) : 'open'} ${s.ok ? 'ok' : s.reason ?? ''}`).join('; ')}${overlap ? ' (overlapping)' : ''}`);
    }
  }
  return { double, reused, details };
}
