import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStore, type KvStore } from '@warmpool/registry';
import { repoRoot, slowness, startMesh, type Mesh, type MeshOptions } from '../src/index.js';
import { auditHistory, findOrphans, RegistryMonitor, type HistoryAudit, type OrphanReport } from './monitor.js';
import { createNetnsHost, type NetnsHost } from './netns.js';
import type { Scenario, ScenarioContext } from './scenarios.js';
import { checkClientAssignments, Workload, type SessionLog, type WorkloadOptions } from './workload.js';

export const SERVICE = 'chatbot';
export const WARM = 3;
export const LEASE_TTL_SEC = 3;

/** The workload's shape (clients, turns, think and pause times) and the fault's timing. */
export interface Profile extends Pick<WorkloadOptions, 'clients' | 'turns' | 'thinkMs' | 'pauseMs'> {
  /** Workload time before the fault. */
  preFaultMs: number;
  /** Workload keeps running this long after the fault is healed. */
  postHealMs: number;
  /** Recovery must happen within this long after the injection, or it is reported as not recovered. */
  recoveryTimeoutMs: number;
}

export const PROFILES: Record<'short' | 'full', Profile> = {
  // Chat-like sessions (a few turns with think time) at a rate the pool can refill (~1 boot/s
  // here, warm 3): the baseline scenario shows the pool stays warm under this load.
  short: { clients: 4, turns: 5, thinkMs: [700, 1300], pauseMs: [1000, 2000], preFaultMs: 5_000, postHealMs: 5_000, recoveryTimeoutMs: 60_000 },
  full: { clients: 6, turns: 6, thinkMs: [900, 1600], pauseMs: [1500, 3000], preFaultMs: 12_000, postHealMs: 15_000, recoveryTimeoutMs: 120_000 },
};

export interface ScenarioResult {
  scenario: string;
  method: string;
  profile: 'short' | 'full';
  served: number;
  failed: number;
  doubleAssigned: number;
  orphans: number;
  /** From the injection until new sessions work and every warm slot is filled again (ready or refilling); null: not recovered within the timeout, or the pool never got back to `warm` ready instances. */
  recoverySec: number | null;
  attempted: number;
  failures: Record<string, number>;
  retried: number;
  deleteFailed: number;
  doubleAssignedClient: number;
  doubleAssignedRegistry: number;
  /** Instances that served a second session after the first ended (must be 0 too). */
  reused: number;
  /** From the injection until `warm` instances were ready and unclaimed again (null: not within the timeout). */
  readySec: number | null;
  healSec: number | null;
  danglingSessions: number;
  registryReads: number;
  /** Time clients waited for a created session (ms): median and worst. */
  createMsP50: number | null;
  createMsMax: number | null;
  durationSec: number;
  error?: string;
  details?: Record<string, unknown>;
  [extra: string]: unknown;
}

/** How the fault is made, for the report. */
export function methodOf(sc: Scenario): string {
  if (sc.netns) return 'netns';
  if (sc.name === 'baseline') return 'none';
  if (sc.name === 'kill-app' || sc.name === 'kill-sidecar') return 'docker-kill';
  if (sc.name.includes('etcd')) return 'etcd-kill';
  return 'kill-9';
}

export function emptyResult(sc: Scenario, profile: 'short' | 'full'): ScenarioResult {
  return {
    scenario: sc.name, method: methodOf(sc), profile,
    served: 0, failed: 0, doubleAssigned: 0, orphans: 0, recoverySec: null,
    attempted: 0, failures: {}, retried: 0, deleteFailed: 0, doubleAssignedClient: 0, doubleAssignedRegistry: 0, reused: 0,
    readySec: null, healSec: null, danglingSessions: 0, registryReads: 0, createMsP50: null, createMsMax: null, durationSec: 0,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function percentile(xs: number[], p: number): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}
const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Everything torn down at the end of a scenario, also on SIGINT (see run.ts). */
export const cleanups = new Set<() => Promise<void>>();

export async function cleanupAll(): Promise<void> {
  for (const c of [...cleanups]) {
    cleanups.delete(c);
    await c().catch(() => undefined);
  }
}

function servicesFile(): { services: unknown[] } {
  return {
    services: [{
      name: SERVICE, image: 'warmpool/chatbot-demo', warm: WARM, maxPerHost: 8, bootTimeoutSec: 30,
      readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: '1' },
      session: { idleTimeoutSec: 30, maxLifetimeSec: 600 },
    }],
  };
}

const liveRouters = (mesh: Mesh): string[] =>
  mesh.routers.filter((r) => r.proc && r.proc.exitCode === null && r.proc.signalCode === null && r.url).map((r) => r.url);

/** A fresh session through a live router, one chat request, checked, and ended. */
async function probeSession(mesh: Mesh, track: SessionLog[]): Promise<boolean> {
  const routers = liveRouters(mesh);
  if (!routers.length) return false;
  const key = randomBytes(12).toString('hex');
  for (let k = 0; k < 3; k++) {
    const base = routers[(k + Math.floor(Math.random() * routers.length)) % routers.length]!;
    try {
      const res = await fetch(`${base}/v1/sessions?wait=5`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify({ service: SERVICE }),
        signal: AbortSignal.timeout(8_000),
      });
      if (res.status !== 201) { await res.body?.cancel(); continue; }
      const s = (await res.json()) as { sessionId: string; instanceId: string };
      const log: SessionLog = { sessionId: s.sessionId, instanceId: s.instanceId, start: Date.now(), end: 0, seen: new Set(), ok: false };
      track.push(log);
      const chat = await fetch(`${base}/v1/sessions/${s.sessionId}/proxy/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'probe' }] }), signal: AbortSignal.timeout(5_000),
      });
      await chat.body?.cancel();
      const seen = chat.headers.get('x-instance-id');
      if (seen) log.seen.add(seen);
      const ok = chat.status === 200 && seen === s.instanceId;
      if (chat.status === 200) log.lastOk = Date.now();
      log.ok = ok;
      if (!ok) log.reason = 'other';
      await fetch(`${base}/v1/sessions/${s.sessionId}`, { method: 'DELETE', signal: AbortSignal.timeout(5_000) }).then((r) => r.body?.cancel()).catch(() => undefined);
      log.end = Date.now();
      if (ok) return true;
    } catch { /* try another router */ }
  }
  return false;
}

export interface RunOptions {
  profile: 'short' | 'full';
  logDir?: string;
  log?: (msg: string) => void;
}

export async function runScenario(sc: Scenario, opts: RunOptions): Promise<ScenarioResult> {
  const prof = PROFILES[opts.profile];
  const t0 = Date.now();
  const say = (m: string): void => opts.log?.(`[${sc.name} +${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  const procLines: string[] = [];
  const notes: Record<string, unknown> = {};
  let host: NetnsHost | undefined;
  let mesh: Mesh | undefined;
  let store: KvStore | undefined;
  let monitor: RegistryMonitor | undefined;
  let workload: Workload | undefined;

  const teardown = async (): Promise<void> => {
    await workload?.stop().catch(() => undefined);
    await monitor?.stop().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await mesh?.stop().catch(() => undefined);
    await host?.destroy().catch(() => undefined);
  };
  cleanups.add(teardown);

  const result = emptyResult(sc, opts.profile);
  // Set when the scenario is over (also on failure): stops the recovery watcher.
  let over = false;

  try {
    const meshOpts: MeshOptions = {
      agents: 2, routers: sc.routers ?? 2, etcdMembers: sc.etcdMembers ?? 1, leaseTtlSec: LEASE_TTL_SEC, services: servicesFile(),
      onLine: (proc, line) => { procLines.push(`${new Date().toISOString()} ${proc} ${line}`); if (procLines.length > 50_000) procLines.shift(); },
    };
    if (sc.netns) {
      host = await createNetnsHost();
      const h = host;
      const hostEtcd: string[] = [];
      meshOpts.hostAddresses = ['127.0.0.1', h.hostAddress];
      meshOpts.etcdExtraArgs = (m) => {
        const port = new URL(m.clientUrl).port;
        hostEtcd.push(`http://${h.hostAddress}:${port}`);
        return ['--listen-client-urls', `${m.clientUrl},http://${h.hostAddress}:${port}`];
      };
      meshOpts.agentCommandPrefix = (i) => (i === 1 ? h.exec : undefined);
      meshOpts.agentEtcdEndpoints = (i) => (i === 1 ? hostEtcd.join(',') : undefined);
      say(`host-2 in network namespace ${h.name} at ${h.hostAddress} (veth peer ${h.innerAddress})`);
    }
    mesh = await startMesh(meshOpts);
    const m = mesh;
    store = await openStore({ backend: 'etcd', endpoints: m.etcd.endpoints });
    monitor = new RegistryMonitor(store, m.prefix, SERVICE);
    monitor.start();
    const mon = monitor;
    const warmAt = Date.now() + 90_000 * slowness();
    while (!(mon.latest && mon.latest.readyUnclaimed >= WARM && mon.latest.hosts.length === 2)) {
      if (Date.now() > warmAt) throw new Error('the pool never became warm');
      await sleep(200);
    }
    say(`mesh up and warm (${m.etcd.members.length} etcd, ${m.agents.length} agents, ${m.routers.length} routers; cluster label ${m.cluster}, prefix ${m.prefix})`);

    workload = new Workload({
      routers: () => m.routers.map((r) => r.url).filter(Boolean), service: SERVICE, clients: prof.clients, turns: prof.turns,
      thinkMs: prof.thinkMs, pauseMs: prof.pauseMs, tries: 4, waitSec: 10,
    });
    const wl = workload;
    wl.start();
    await sleep(prof.preFaultMs);

    let injectedAt: number | undefined;
    let healedAt: number | undefined;
    const background: Promise<unknown>[] = [];
    const ctx: ScenarioContext = {
      mesh: m, monitor: mon, host, short: opts.profile === 'short', leaseTtlSec: LEASE_TTL_SEC,
      injected: () => { injectedAt ??= Date.now(); say('fault injected'); },
      healed: () => { healedAt ??= Date.now(); say('fault healed'); },
      background: (p) => { background.push(p.catch((err: unknown) => say(`background task failed: ${(err as Error).message}`))); },
      note: (k, v) => { notes[k] = v; },
      log: say,
      sleep,
    };

    // Recovery, measured from the injection: after the heal, the first fresh registry read in
    // which every warm slot is held by a live unclaimed instance (ready, or booting as the
    // refill of a slot a session just consumed), followed by a probe session
    // that works end to end. readyAt: the first read with `warm` instances ready, unclaimed
    // (under a steady workload that can wait for the workload to end).
    const probes: SessionLog[] = [];
    let recoveredAt: number | undefined;
    let readyAt: number | undefined;
    const recovery = (async () => {
      while (healedAt === undefined) { if (over) return; await sleep(50); }
      // The timeout is the work's on an idle machine, stretched by the machine's slowness.
      const deadline = (injectedAt ?? healedAt) + prof.recoveryTimeoutMs * slowness();
      while (!over && Date.now() < deadline && (recoveredAt === undefined || readyAt === undefined)) {
        const snap = await mon.freshAfter(Math.max(healedAt, Date.now() - 50), 2_000);
        if (snap && readyAt === undefined && snap.readyUnclaimed >= WARM) readyAt = snap.at;
        if (snap && recoveredAt === undefined && snap.readyUnclaimed + snap.booting >= WARM && await probeSession(m, probes)) recoveredAt = Date.now();
        else await sleep(200);
      }
    })();

    await sc.inject(ctx);
    if (injectedAt === undefined) injectedAt = Date.now();
    if (healedAt === undefined) healedAt = Date.now();
    // Keep the workload going through the fault and a while after the heal.
    const stopAt = healedAt + prof.postHealMs;
    while (Date.now() < stopAt) await sleep(100);
    say('stopping the workload');
    await wl.stop();
    await recovery;
    await Promise.all(background);
    // One verdict for the log line and the result (recoverySec below): recovered means new
    // sessions work AND the pool got back to `warm` ready instances.
    const recoveredSec = recoveredAt !== undefined && readyAt !== undefined ? round1((recoveredAt - injectedAt) / 1000) : null;
    const recovered = recoveredSec !== null;
    say(recovered
      ? `recovered after ${recoveredSec.toFixed(1)} s`
      : recoveredAt !== undefined
        ? `NOT recovered: new sessions worked after ${((recoveredAt - injectedAt) / 1000).toFixed(1)} s, but the pool never got back to ${WARM} ready instances`
        : 'NOT recovered within the timeout');

    // Quiesce: pool warm, nothing booting, then look for orphans (the agents remove
    // strays after their grace period, 5 s here, on their next container list).
    // (A mesh that did not recover gets less time: the orphan check still runs.)
    const quiet = Date.now() + (recovered ? 60_000 : 15_000);
    while (Date.now() < quiet) {
      const s = mon.latest;
      if (s && s.at > Date.now() - 1_500 && s.readyUnclaimed >= WARM && s.booting === 0) break;
      await sleep(250);
    }
    let orphans: OrphanReport | undefined;
    const orphanDeadline = Date.now() + 45_000 * slowness();
    for (;;) {
      try { orphans = await findOrphans(store, m.prefix, SERVICE, m.cluster); } catch (err) { say(`orphan check failed: ${(err as Error).message}`); }
      if ((orphans && orphans.total === 0) || Date.now() > orphanDeadline) break;
      await sleep(1_000);
    }
    await mon.stop();
    let history: HistoryAudit | undefined;
    try { history = await auditHistory(store, m.prefix); } catch (err) { notes.historyAudit = `failed: ${(err as Error).message}`; }

    const client = checkClientAssignments([...wl.sessions, ...probes], Date.now());
    const regDouble = new Map([...mon.double, ...(history?.double ?? [])]);
    const regReused = new Map([...mon.reused, ...(history?.reused ?? [])]);
    Object.assign(result, {
      served: wl.stats.served, failed: wl.stats.failed, attempted: wl.stats.attempted, failures: wl.stats.failures,
      retried: wl.stats.retried, deleteFailed: wl.stats.deleteFailed,
      createMsP50: percentile(wl.stats.createMs, 0.5), createMsMax: percentile(wl.stats.createMs, 1),
      ...(wl.stats.slowestCreateAt ? { slowestCreateAt: new Date(wl.stats.slowestCreateAt).toISOString() } : {}),
      doubleAssignedClient: client.double.length, doubleAssignedRegistry: regDouble.size,
      doubleAssigned: new Set([...client.double, ...regDouble.keys()]).size,
      reused: new Set([...client.reused, ...regReused.keys()]).size,
      claimsAudited: history?.claims ?? null, probes: probes.length,
      orphans: orphans ? orphans.total : -1,
      danglingSessions: orphans?.danglingSessions.length ?? 0,
      // A pool that never gets back to `warm` ready instances has not recovered, whatever
      // single read said before (a leaked slot can let ready + booting touch warm once).
      recoverySec: recoveredSec,
      readySec: readyAt ? round1((Math.max(readyAt, injectedAt) - injectedAt) / 1000) : null,
      healSec: round1((healedAt - injectedAt) / 1000),
      registryReads: mon.reads,
    });
    const details: Record<string, unknown> = {};
    if (wl.stats.samples.length) details.failureSamples = wl.stats.samples;
    if (client.details.length) details.clientAssignments = client.details;
    if (regDouble.size) details.registryDouble = [...regDouble].map(([k, v]) => `${k}: ${v}`);
    if (regReused.size) details.registryReused = [...regReused].map(([k, v]) => `${k}: ${v}`);
    if (orphans && orphans.total) details.orphans = { containers: orphans.containers, records: orphans.records };
    if (orphans?.danglingSessions.length) details.danglingSessions = orphans.danglingSessions;
    if (orphans?.failedRecords.length) details.failedRecordsKept = orphans.failedRecords;
    if (Object.keys(details).length) result.details = details;
    Object.assign(result, notes);
  } catch (err) {
    result.error = (err as Error).message;
    if (mesh === undefined || monitor === undefined) result.orphans = -1;
    say(`error: ${(err as Error).stack ?? String(err)}`);
  } finally {
    over = true;
    result.durationSec = round1((Date.now() - t0) / 1000);
    if (opts.logDir) {
      try {
        mkdirSync(opts.logDir, { recursive: true });
        const lines = [...procLines, ...(monitor?.timeline ?? [])].sort();
        writeFileSync(path.join(opts.logDir, `${sc.name}.log`), `${lines.join('\n')}\n`);
      } catch { /* logs are best effort */ }
    }
    cleanups.delete(teardown);
    await teardown();
  }
  return result;
}

export const defaultLogDir = path.join(repoRoot, 'test-results', 'faults');
