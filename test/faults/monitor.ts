import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ClaimRecord, InstanceRecord, KvEvent, KvStore, KvWatch, SessionRecord } from '@warmpool/registry';

const exec = promisify(execFile);

/** One consistent read of the mesh's registry prefix. */
export interface Snapshot {
  at: number;
  instances: InstanceRecord[];
  /** instance id -> claiming session id */
  claims: Map<string, string>;
  /** instance id -> when it was claimed (epoch ms, from the claim record) */
  claimedAt: Map<string, number>;
  sessions: Map<string, SessionRecord>;
  hosts: string[];
  /** Warm slots of the service: slot number -> holder instance id. */
  slots: Map<number, string>;
  /** Ready instances of the service without a claim. */
  readyUnclaimed: number;
  booting: number;
  claimed: number;
  failedState: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms); }),
  ]);
}

/** A fresh, linearizable read of everything under the prefix (fails while etcd is down). */
export async function readSnapshot(store: KvStore, prefix: string, service: string): Promise<Snapshot> {
  const { entries } = await withTimeout(store.list(prefix), 2_000, 'registry read');
  const instances: InstanceRecord[] = [];
  const claims = new Map<string, string>();
  const claimedAt = new Map<string, number>();
  const sessions = new Map<string, SessionRecord>();
  const hosts: string[] = [];
  const slots = new Map<number, string>();
  for (const e of entries) {
    const rest = e.key.slice(prefix.length);
    const kind = rest.split('/')[0];
    try {
      if (kind === 'instances') instances.push(JSON.parse(e.value) as InstanceRecord);
      else if (kind === 'claims') {
        const c = JSON.parse(e.value) as ClaimRecord;
        const inst = rest.split('/')[2] ?? c.instanceId;
        claims.set(inst, c.sessionId);
        claimedAt.set(inst, c.claimedAt);
      }
      else if (kind === 'sessions') { const s = JSON.parse(e.value) as SessionRecord; sessions.set(s.id, s); }
      else if (kind === 'hosts') hosts.push(rest.split('/')[1] ?? '');
      else if (kind === 'slots' && rest.split('/')[1] === service) slots.set(Number(rest.split('/')[2]), (JSON.parse(e.value) as { instanceId: string }).instanceId);
    } catch { /* a value that is not JSON is not ours to judge here */ }
  }
  const mine = instances.filter((i) => i.service === service);
  return {
    at: Date.now(), instances, claims, claimedAt, sessions, hosts, slots,
    readyUnclaimed: mine.filter((i) => i.state === 'ready' && !claims.has(i.id)).length,
    booting: mine.filter((i) => i.state === 'booting').length,
    claimed: mine.filter((i) => claims.has(i.id) || i.state === 'claimed').length,
    failedState: mine.filter((i) => i.state === 'failed').length,
  };
}

/**
 * Polls the registry through the whole scenario and checks, in every snapshot, that no
 * instance is held by two sessions (two live session records naming it, or a claim whose
 * session names another instance), and across snapshots that no instance is ever claimed
 * by a second session (one instance, one session).
 */
export class RegistryMonitor {
  latest: Snapshot | undefined;
  /** Instances held by two sessions at once, as the registry showed it. */
  readonly double = new Map<string, string>();
  /** Instances claimed by more than one session over the scenario. */
  readonly reused = new Map<string, string>();
  readonly ownersSeen = new Map<string, Set<string>>();
  reads = 0;
  readErrors = 0;
  /** One line per read that changed the pool's counts (for the scenario's log). */
  readonly timeline: string[] = [];
  private lastLine = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly store: KvStore, private readonly prefix: string, private readonly service: string, private readonly intervalMs = 400) {}

  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.poll().finally(() => { if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs); });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** A snapshot taken after `t` (waits for the next successful poll; undefined on timeout). */
  async freshAfter(t: number, timeoutMs: number): Promise<Snapshot | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.latest && this.latest.at > t) return this.latest;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  }

  private async poll(): Promise<void> {
    let s: Snapshot;
    try {
      s = await readSnapshot(this.store, this.prefix, this.service);
    } catch {
      this.readErrors++;
      return;
    }
    this.reads++;
    this.latest = s;
    const slotText = [...s.slots].sort((a, b) => a[0] - b[0]).map(([n, id]) => {
      const inst = s.instances.find((i) => i.id === id);
      return `${n}:${id.slice(-6)}${inst ? `/${inst.host}/${s.claims.has(id) ? 'claimed' : inst.state}` : '/NO-RECORD'}`;
    }).join(' ');
    const line = `ready=${s.readyUnclaimed} booting=${s.booting} claimed=${s.claimed} failed=${s.failedState} sessions=${s.sessions.size} hosts=${s.hosts.join(',')} slots=[${slotText}]`;
    if (line !== this.lastLine && this.timeline.length < 5_000) this.timeline.push(`${new Date(s.at).toISOString()} registry ${line}`);
    this.lastLine = line;
    const holders = new Map<string, string[]>();
    for (const sess of s.sessions.values()) {
      const list = holders.get(sess.instanceId) ?? [];
      list.push(sess.id);
      holders.set(sess.instanceId, list);
    }
    for (const [inst, list] of holders) {
      if (list.length > 1) this.double.set(inst, `two live session records: ${list.map((x) => x.slice(0, 8)).join(', ')}`);
    }
    for (const [inst, sid] of s.claims) {
      const sess = s.sessions.get(sid);
      if (sess && sess.instanceId !== inst) this.double.set(inst, `claimed by ${sid.slice(0, 8)}, whose session names ${sess.instanceId}`);
      const owners = this.ownersSeen.get(inst) ?? new Set<string>();
      owners.add(sid);
      this.ownersSeen.set(inst, owners);
      if (owners.size > 1) this.reused.set(inst, `claimed by ${[...owners].map((x) => x.slice(0, 8)).join(', ')} over time`);
    }
  }
}

export interface ContainerRow {
  id: string;
  instance: string;
  role: string;
  host: string;
  state: string;
}

export async function listMeshContainers(cluster: string): Promise<ContainerRow[]> {
  const { stdout } = await exec('docker', [
    'ps', '-a', '--filter', `label=warmpool.cluster=${cluster}`,
    '--format', '{{.ID}}\t{{.Label "warmpool.instance"}}\t{{.Label "warmpool.role"}}\t{{.Label "warmpool.host"}}\t{{.State}}',
  ], { timeout: 20_000 });
  return stdout.split('\n').filter(Boolean).map((line) => {
    const [id = '', instance = '', role = '', host = '', state = ''] = line.split('\t');
    return { id, instance, role, host, state };
  });
}

export interface OrphanReport {
  /** Containers of this mesh that no instance record owns. */
  containers: string[];
  /** Instance records whose app or sidecar container is missing or not running. */
  records: string[];
  /** Sessions whose instance has no record (the mesh should have ended them). Informational. */
  danglingSessions: string[];
  /** Failed records kept visible by design (containers gone). Informational. */
  failedRecords: string[];
  total: number;
}

export async function findOrphans(store: KvStore, prefix: string, service: string, cluster: string): Promise<OrphanReport> {
  const snap = await readSnapshot(store, prefix, service);
  const rows = await listMeshContainers(cluster);
  const recorded = new Map(snap.instances.map((i) => [i.id, i]));
  const containers = rows.filter((r) => !recorded.has(r.instance)).map((r) => `${r.id} (${r.role || '?'} of ${r.instance || '?'} on ${r.host || '?'}, ${r.state})`);
  const records: string[] = [];
  const failedRecords: string[] = [];
  for (const i of snap.instances) {
    const mine = rows.filter((r) => r.instance === i.id);
    const app = mine.find((r) => r.role === 'app');
    const sidecar = mine.find((r) => r.role === 'sidecar');
    if (i.state === 'failed') {
      // By design the agent keeps the latest failed record of a service visible (with its
      // backoff) until the host has a ready instance of it again; its containers must be gone.
      if (mine.length) records.push(`${i.id} on ${i.host} (failed, containers not removed: ${mine.map((r) => `${r.role} ${r.state}`).join(', ')})`);
      else failedRecords.push(`${i.id} on ${i.host}: ${i.reason ?? ''}`);
      continue;
    }
    if (app?.state !== 'running' || sidecar?.state !== 'running') {
      records.push(`${i.id} on ${i.host} (${i.state}): app ${app?.state ?? 'missing'}, sidecar ${sidecar?.state ?? 'missing'}`);
    }
  }
  const danglingSessions = [...snap.sessions.values()].filter((s) => !recorded.has(s.instanceId)).map((s) => `${s.id.slice(0, 8)} -> ${s.instanceId}`);
  return { containers, records, danglingSessions, failedRecords, total: containers.length + records.length };
}

export interface HistoryAudit {
  /** Revisions replayed. */
  events: number;
  /** Instances two sessions held at once (two live session records, or a claim overwritten by another session). */
  double: Map<string, string>;
  /** Instances claimed by more than one session over the scenario (one after the other). */
  reused: Map<string, string>;
  /** Claims seen (one per session that got an instance). */
  claims: number;
}

/**
 * Replays the registry's whole history under the prefix (etcd keeps every revision: the test
 * cluster never compacts) and checks every revision, not just sampled ones: no instance is
 * named by two live session records, no claim key is overwritten by another session, and no
 * instance is ever claimed by a second session.
 */
export async function auditHistory(store: KvStore, prefix: string, timeoutMs = 20_000): Promise<HistoryAudit> {
  const { revision: target } = await withTimeout(store.list(prefix), 5_000, 'registry read');
  const audit: HistoryAudit = { events: 0, double: new Map(), reused: new Map(), claims: 0 };
  const sessionInstance = new Map<string, string>();
  const liveByInstance = new Map<string, Set<string>>();
  const claimOf = new Map<string, string>();
  const claimers = new Map<string, Set<string>>();
  const short = (ids: Iterable<string>): string => [...ids].map((x) => x.slice(0, 8)).join(', ');

  const apply = (e: KvEvent): void => {
    audit.events++;
    const rest = e.key.slice(prefix.length).split('/');
    if (rest[0] === 'sessions' && rest[1]) {
      const sid = rest[1];
      if (e.type === 'put' && e.value) {
        let inst: string | undefined;
        try { inst = (JSON.parse(e.value) as SessionRecord).instanceId; } catch { return; }
        sessionInstance.set(sid, inst);
        const live = liveByInstance.get(inst) ?? new Set<string>();
        live.add(sid);
        liveByInstance.set(inst, live);
        if (live.size > 1) audit.double.set(inst, `live session records at revision ${e.modRevision}: ${short(live)}`);
      } else if (e.type === 'delete') {
        const inst = sessionInstance.get(sid);
        if (inst) liveByInstance.get(inst)?.delete(sid);
      }
    } else if (rest[0] === 'claims' && rest[2]) {
      const inst = rest[2];
      if (e.type === 'put' && e.value) {
        let sid: string;
        try { sid = (JSON.parse(e.value) as ClaimRecord).sessionId; } catch { return; }
        const held = claimOf.get(inst);
        if (held && held !== sid) audit.double.set(inst, `claim of ${held.slice(0, 8)} overwritten by ${sid.slice(0, 8)} at revision ${e.modRevision}`);
        claimOf.set(inst, sid);
        const all = claimers.get(inst) ?? new Set<string>();
        if (!all.has(sid)) audit.claims++;
        all.add(sid);
        claimers.set(inst, all);
        if (all.size > 1) audit.reused.set(inst, `claimed by ${short(all)} (last at revision ${e.modRevision})`);
      } else if (e.type === 'delete') {
        claimOf.delete(inst);
      }
    }
  };

  await new Promise<void>((resolve, reject) => {
    let w: KvWatch | undefined;
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void w?.close().catch(() => undefined);
      if (err) reject(err); else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`history replay did not reach revision ${target} in ${timeoutMs} ms`)), timeoutMs);
    store.watch(prefix, '0', {
      onEvents(events, revision) {
        for (const e of events) if (BigInt(e.modRevision) <= BigInt(target)) apply(e);
        if (BigInt(revision) >= BigInt(target)) finish();
      },
      onReset(reason) { finish(new Error(`history replay reset: ${reason}`)); },
    }).then((x) => { w = x; if (done) void x.close().catch(() => undefined); }, (err: unknown) => finish(err as Error));
  });
  return audit;
}
