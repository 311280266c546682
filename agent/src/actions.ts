import { WarmpoolError, poolView, type HostSession, type InstanceRecord, type Registry, type RegistryCache } from '@warmpool/registry';
import type { Clock } from './clock.js';
import { sleep } from './clock.js';
import { appContainerSpec, podSidecarPort, sidecarContainerSpec, specHash, type PodInput } from './container-spec.js';
import type { ContainerRuntime } from './docker.js';
import { AgentError } from './errors.js';
import { DEFAULT_ALLOW, grantHostOptions, grantSecrets, namedVolumeRefusal, redact } from './host-policy.js';
import type { Logger } from './logger.js';
import type { Action, LocalInstance } from './plan.js';
import type { ServiceBackoff } from './backoff.js';
import { exitReason, hostFaultOf, withDeadline } from './engine-faults.js';
import type { AgentOptions, AgentTiming } from './agent-options.js';
import type { ImagePuller } from './image-puller.js';
import { waitForImage } from './instance-pull.js';
import { removeOrphans } from './orphans.js';

/** What the action executors need of the agent. */
export interface AgentContext {
  readonly hostId: string;
  readonly cluster: string;
  readonly opts: AgentOptions;
  readonly timing: AgentTiming;
  readonly registry: Registry;
  readonly cache: RegistryCache;
  readonly host: HostSession;
  readonly runtime: ContainerRuntime;
  readonly clock: Clock;
  readonly log: Logger;
  readonly backoff: ServiceBackoff;
  /** Host faults (engine too slow, disk full): delays every service on this host, key '*'. */
  readonly hostBackoff: ServiceBackoff;
  readonly images: ImagePuller;
  readonly local: Map<string, LocalInstance>;
  readonly busy: Set<string>;
  readonly starting: Set<string>;
  /** GPUs reserved by the start in flight of a service (until its instance is in `local`). */
  readonly startingGpus: Map<string, string[]>;
  readonly removing: Set<string>;
  /** service -> id of the failed record kept visible for it (the latest failure) */
  readonly failedRecords: Map<string, string>;
  readonly address: string;
  readonly publishIp: string;
  readonly sidecarImage: string;
  readonly sidecarPort: number;
  readonly runDir: string;
  newInstanceId(service: string): string;
  keyFor(instanceId: string): string;
  draining(): boolean;
  isClosed(): boolean;
  kick(): void;
  track<T>(p: Promise<T>): void;
}

/** The planner's reason for an unclaimed instance whose warm slot is gone (plan.ts). */
const SLOT_LOST = 'warm slot lost';

/** How long a destroy waits for the exit an oom or kill event announced. */
const EXIT_WAIT_MS = 5_000;

/**
 * How long a destroy waits, after a container with a memory limit exits from SIGKILL, for
 * the engine to mark it OOM-killed. The runtime may deliver the OOM event after the exit
 * event; the engine sets the flag only when the OOM event arrives (seen on Docker 20.10
 * with cgroup v2: OOMKilled false at the first inspect, exit code 137).
 */
const OOM_SETTLE_MS = 1_500;

type InstanceAction = Exclude<Action, { type: 'start' } | { type: 'remove-strays' }>;

/**
 * The side effects of the plan's actions: registry writes (through the host session, so they
 * live on the host lease) and container operations. Every registry write of one instance
 * goes through one queue, in order.
 */
export class Actions {
  private queues = new Map<string, Promise<void>>();
  /** Instances waiting for their image -> stop that wait (the instance is not wanted any more). */
  private readonly pullWaits = new Map<string, (reason: string) => void>();

  constructor(private readonly ctx: AgentContext) {}

  /** The instance's registry record as the agent sees it now. */
  record(inst: LocalInstance): InstanceRecord {
    return {
      id: inst.id, service: inst.service, host: this.ctx.hostId,
      state: inst.phase === 'creating' ? 'booting' : inst.phase === 'booting' && inst.warmingSince !== undefined ? 'warming' : inst.phase,
      address: inst.address ?? '', containerId: inst.appContainerId ?? '', slot: inst.slot,
      createdAt: inst.createdAt, readyAt: inst.readyAt, bootMs: inst.bootMs,
      ...(inst.gpus?.length ? { gpus: inst.gpus } : {}),
      ...(inst.phase === 'pulling' ? { pull: inst.pull ?? null } : {}),
      ...(inst.stages ? { stages: { ...inst.stages } } : {}),
    };
  }

  /** Queues a write of the instance's record (with overrides); resolves when it is written. */
  writeRecord(inst: LocalInstance, override: Partial<InstanceRecord> = {}, after?: Promise<void>): Promise<void> {
    const rec = { ...this.record(inst), ...override };
    // A ready instance gets a pre-granted session lease: a claim then costs one transaction.
    const idle = this.ctx.cache.services.get(inst.service)?.value.session.idleTimeoutSec;
    const opts = rec.state === 'ready' && idle ? { sessionLeaseTtlSec: idle } : {};
    return this.enqueue(inst.id, async () => {
      if (after) await after;
      await this.ctx.host.putInstance(rec, opts);
    });
  }

  private enqueue(id: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch((err: unknown) => this.ctx.log.warn({ err, instance: id }, 'registry write failed'));
    this.queues.set(id, settled);
    void settled.finally(() => { if (this.queues.get(id) === settled) this.queues.delete(id); });
    return next;
  }

  /** Warm slots of the service now, from the registry as this agent sees it (pool-view.ts). */
  slotsOf(service: string): number {
    const spec = this.ctx.cache.services.get(service)?.value;
    return spec ? poolView(this.ctx.cache, spec, this.ctx.clock.now()).slots : 0;
  }

  run(a: InstanceAction): Promise<void> {
    switch (a.type) {
      case 'mark-claimed': return this.markClaimed(a.instanceId, a.sessionId);
      case 'release-slot': return this.releaseSlot(a.instanceId);
      case 'end-session': return this.endSession(a.instanceId, a.sessionId, a.reason);
      case 'destroy':
        if (a.reason === SLOT_LOST) return this.destroyIfSlotLost(a.instanceId);
        return this.destroy(a.instanceId, a.reason, a.failure, a.tombstoneFor);
    }
  }

  /**
   * A warm slot gone with no claim in the cache: the slot went with a lost lease, or the claim
   * that deleted it is not in the cache yet (claims and slots are watched apart). The store
   * decides: a claimed instance is kept (the cache shows its claim next), never destroyed
   * under its new session.
   */
  private async destroyIfSlotLost(id: string): Promise<void> {
    const inst = this.ctx.local.get(id);
    if (!inst) return;
    const claim = await this.ctx.registry.claimOf(inst.service, id).catch(() => null);
    if (claim === null) return; // the registry is away: decide at the next reconcile
    if (claim && !claim.ended) {
      this.ctx.log.info({ instance: id, session: claim.sessionId }, 'slot gone with a claim the cache had not shown yet: kept');
      return;
    }
    await this.destroy(id, SLOT_LOST, false);
  }

  /**
   * Writes the instance's record as draining (out of the ready set, no slot) only while no
   * claim exists for it. Returns the session id of a live claim that landed first (the
   * instance is that session's now), else undefined once the record is out of the ready
   * set. A claim that ended already does not hold the instance: it is taken out anyway.
   */
  private async retireUnlessClaimed(inst: LocalInstance): Promise<string | undefined> {
    const { ctx } = this;
    const claimKey = ctx.cache.keys.claim(inst.service, inst.id);
    for (let attempt = 0; ; attempt++) {
      let out = false;
      const draining = { ...this.record(inst), state: 'draining' as const, slot: null };
      await this.enqueue(inst.id, async () => { out = await ctx.host.putInstanceUnlessClaimed(draining, claimKey); });
      if (out) return undefined;
      const claim = await ctx.registry.store.get(claimKey);
      if (claim) {
        const c = JSON.parse(claim.value) as { sessionId: string; ended?: boolean };
        if (!c.ended) return c.sessionId;
        await this.writeRecord(inst, { state: 'draining', slot: null });
        return undefined;
      }
      // The claim went between the two reads (its session ended and was cleaned up): again.
      if (attempt >= 2) { await this.writeRecord(inst, { state: 'draining', slot: null }); return undefined; }
    }
  }

  // ---- start -------------------------------------------------------------------------

  /** Waits the spread delay, takes the slot (or loses the race), then launches the pod. */
  async start(a: Extract<Action, { type: 'start' }>): Promise<void> {
    const { ctx } = this;
    if (a.delayMs > 0) await sleep(ctx.clock, a.delayMs);
    if (ctx.isClosed() || ctx.draining()) return;
    const spec = ctx.cache.services.get(a.service)?.value;
    const until = Math.max(ctx.backoff.until(a.service) ?? 0, ctx.hostBackoff.until('*') ?? 0, spec ? ctx.images.backoffUntil(spec.image) ?? 0 : 0);
    if (!spec || a.slot >= this.slotsOf(a.service) || until > ctx.clock.now()) return;
    if (ctx.cache.slots.has(ctx.cache.keys.slot(a.service, a.slot))) return; // someone was faster
    const id = ctx.newInstanceId(a.service);
    if (!(await ctx.host.takeSlot(a.service, a.slot, id))) {
      ctx.log.debug({ service: a.service, slot: a.slot }, 'lost the race for a warm slot');
      return;
    }
    const inst: LocalInstance = {
      id, service: a.service, phase: 'creating', slot: a.slot, slotSeen: false, specHash: specHash(spec),
      memoryMb: spec.resources.memoryMb, createdAt: ctx.clock.now(), startedAt: null, launchedAt: null, readyAt: null, bootMs: null,
      ...(a.gpus.length ? { gpus: a.gpus } : {}),
    };
    ctx.local.set(id, inst);
    ctx.busy.add(id);
    // The next slot may be taken while this pod is created (the instance holds its GPUs now).
    ctx.starting.delete(a.service);
    ctx.startingGpus.delete(a.service);
    ctx.kick();
    ctx.track(this.launch(inst, { cluster: ctx.cluster, hostId: ctx.hostId, instanceId: id, slot: a.slot, spec, publishIp: ctx.publishIp,
      sidecarImage: ctx.sidecarImage, sidecarPort: ctx.sidecarPort, runDir: ctx.runDir, instanceKey: ctx.keyFor(id), gpus: a.gpus,
      // Filtering the namespace and starting the app each take at most createTimeoutMs.
      startSlackSec: Math.ceil((2 * ctx.timing.createTimeoutMs) / 1000),
      ...(ctx.opts.network ? { network: ctx.opts.network } : {}) })
      .finally(() => { ctx.busy.delete(id); ctx.kick(); }));
  }

  /**
   * The pod: the sidecar first (it owns the network namespace and publishes its port), the
   * namespace filtered so that only the sidecar's port takes connections from outside, then
   * the app in that namespace. The app never runs unfiltered, even for a moment. Each engine
   * call has the host's deadline (timing.createTimeoutMs); the app's boot counts from the
   * engine's start time of the app container, so a slow engine never eats the boot timeout.
   */
  private async launch(inst: LocalInstance, pod: PodInput): Promise<void> {
    const { ctx } = this;
    let booting: Promise<void> = Promise.resolve();
    const limit = ctx.timing.createTimeoutMs;
    // A container whose creation finished after its deadline belongs to nobody: remove it.
    const removeLate = (id: string): void => { void ctx.runtime.remove(id).catch(() => undefined); };
    // The secret values this pod carries: kept out of any error it logs or records.
    let secrets: string[] = [];
    try {
      // The image first (pulling, when the host lacks it): no container, no boot clock yet.
      const abandoned = new Promise<string>((resolve) => this.pullWaits.set(inst.id, resolve));
      const ok = await waitForImage(ctx, inst, pod.spec, (i) => this.writeRecord(i), abandoned).finally(() => this.pullWaits.delete(inst.id));
      if (!ok) return;
      if (inst.dead) return;
      booting = this.writeRecord(inst);
      const t0 = ctx.clock.now();
      // Host paths, named volumes, host IPC and secret files as this host's own config allows;
      // the secret values go into the app's env (secretEnv) and the sidecar's warm-up
      // (secretHeaders) and nowhere else.
      const granted = grantHostOptions(pod.spec, ctx.opts.allow ?? DEFAULT_ALLOW);
      if (!granted.ok) throw new AgentError('WARMPOOL_NOT_ALLOWED', granted.reason);
      secrets = grantSecrets(granted.grant);
      for (const [i, v] of granted.grant.volumes.entries()) {
        if (v.source.startsWith('/')) continue;
        const info = await withDeadline(`inspect volume ${v.source}`, limit, () => ctx.runtime.volume(v.source));
        const refused = info && namedVolumeRefusal(i, v.source, info, ctx.opts.allow ?? DEFAULT_ALLOW);
        if (refused) throw new AgentError('WARMPOOL_NOT_ALLOWED', refused);
      }
      const sidecarPort = podSidecarPort(pod.sidecarPort, pod.spec.containerPort);
      const sidecarId = await withDeadline('create the sidecar container', limit, () => ctx.runtime.create(sidecarContainerSpec({ ...pod, grant: granted.grant })), removeLate);
      inst.sidecarContainerId = sidecarId;
      const [appId] = await Promise.all([
        withDeadline('create the app container', limit, () => ctx.runtime.create(appContainerSpec({ ...pod, grant: granted.grant }, sidecarId)), removeLate)
          .then((id) => { inst.appContainerId = id; return id; }),
        withDeadline('start the sidecar container', limit, () => ctx.runtime.start(sidecarId)),
      ]);
      // The namespace is filtered before the app joins it: the app never runs unfiltered.
      await withDeadline('filter the pod network', limit, () => ctx.runtime.isolate(sidecarId, sidecarPort));
      await withDeadline('start the app container', limit, () => ctx.runtime.start(appId));
      inst.startedAt = ctx.clock.now();
      inst.launchedAt = inst.startedAt;
      const [details, app] = await Promise.all([
        withDeadline('inspect the sidecar container', limit, () => ctx.runtime.inspect(sidecarId)),
        withDeadline('inspect the app container', limit, () => ctx.runtime.inspect(appId)),
      ]);
      // The engine's own start time of the app: what the boot timeout and bootMs count from.
      if (typeof app?.startedAt === 'number') inst.startedAt = app.startedAt;
      inst.stages = { ...inst.stages, createMs: Math.max(0, (inst.startedAt ?? inst.launchedAt) - t0) };
      const port = details?.ports[sidecarPort];
      if (!port) throw new Error(details ? 'the sidecar port was not published' : 'the sidecar container vanished');
      inst.address = `${ctx.address}:${port}`;
      await booting.catch(() => undefined);
      if (inst.dead) return;
      inst.phase = 'booting';
      // The engine works again: host faults no longer delay this host's starts.
      ctx.hostBackoff.success('*');
      ctx.log.info({ instance: inst.id, service: inst.service, slot: inst.slot, address: inst.address, launchMs: ctx.clock.now() - t0 }, 'instance booting');
      if (inst.readyAt !== null) this.becameReady(inst);
      else await this.writeRecord(inst);
    } catch (err) {
      await booting.catch(() => undefined);
      if (!inst.dead) {
        // An unreachable registry says nothing about the image: retire without a penalty.
        // (An engine error, even a 5xx, counts against the service: a spec the engine keeps
        // refusing is retried with the service's backoff, never in a tight loop.)
        const registryDown = WarmpoolError.is(err) && err.retryable && !AgentError.is(err);
        const host = hostFaultOf(err);
        const message = secrets.length ? redact((err as Error).message, secrets) : (err as Error).message;
        inst.dead = host ? `host fault (${host}): ${message}` : `launch failed: ${message}`;
        inst.deadIsFailure = !registryDown && !host;
        if (host) inst.deadIsHostFault = true;
        // The error as logged carries no secret (its message and stack redacted, no cause).
        const logged = secrets.length ? { message, code: (err as { code?: unknown }).code } : err;
        ctx.log.warn({ err: logged, instance: inst.id, service: inst.service, hostFault: host }, 'instance launch failed');
      }
    }
  }

  /** The sidecar reported ready: the instance joins the ready set. */
  becameReady(inst: LocalInstance): void {
    const { ctx } = this;
    inst.phase = 'ready';
    delete inst.warmingSince;
    // Boot from the engine's start of the app container to the readiness probe's success.
    if (inst.startedAt !== null && inst.readinessAt !== undefined) inst.bootMs = Math.max(0, inst.readinessAt - inst.startedAt);
    inst.stages = { ...inst.stages, bootMs: inst.bootMs, warmupMs: inst.stages?.warmupMs ?? null };
    ctx.log.info({ instance: inst.id, service: inst.service, bootMs: inst.bootMs, stages: inst.stages }, 'instance ready');
    void this.writeRecord(inst).catch(() => undefined);
    const failed = ctx.failedRecords.get(inst.service);
    if (failed) {
      ctx.failedRecords.delete(inst.service);
      void this.enqueue(failed, () => ctx.host.deleteInstance(inst.service, failed)).catch(() => undefined);
    }
  }

  /**
   * An instance waiting for its image whose service was removed or changed stops waiting
   * (a pull of many GB must not hold a warm slot the new spec needs).
   */
  abandonUnwantedPulls(): void {
    for (const [id, abandon] of this.pullWaits) {
      const inst = this.ctx.local.get(id);
      if (!inst) continue;
      const spec = this.ctx.cache.services.get(inst.service)?.value;
      if (!spec) abandon('service removed');
      else if (specHash(spec) !== inst.specHash) abandon('service spec changed');
    }
  }

  // ---- instance actions ----------------------------------------------------------------

  private async markClaimed(id: string, sessionId: string): Promise<void> {
    const inst = this.ctx.local.get(id);
    if (!inst || inst.phase === 'claimed') return;
    // The claim transaction deleted the slot key: forget it, never release it.
    if (inst.slot !== null) this.ctx.host.forgetSlot(inst.service, inst.slot);
    // Its pre-granted session lease is the session's now (routers refresh it).
    this.ctx.host.instanceClaimed(id);
    inst.slot = null;
    inst.phase = 'claimed';
    inst.sessionId = sessionId;
    delete inst.claimPendingSince;
    const claim = this.ctx.cache.claims.get(id)?.value;
    if (claim) { inst.claimedAt = claim.claimedAt; if (claim.waitedMs !== undefined) inst.waitedMs = claim.waitedMs; }
    this.ctx.backoff.success(inst.service);
    this.ctx.log.info({ instance: id, service: inst.service, session: sessionId }, 'instance claimed');
    await this.writeRecord(inst);
  }

  private async releaseSlot(id: string): Promise<void> {
    const inst = this.ctx.local.get(id);
    if (!inst || inst.slot === null || inst.phase === 'claimed') return;
    const slot = inst.slot;
    // Record first: a claim of the old record version would delete the slot another host takes next.
    inst.slot = null;
    inst.slotSeen = false;
    await this.writeRecord(inst);
    await this.ctx.host.releaseSlot(inst.service, slot, id);
    this.ctx.log.info({ instance: id, service: inst.service, slot }, 'host draining: warm slot handed back');
  }

  private async endSession(id: string, sessionId: string, reason: 'expired' | 'instance-gone'): Promise<void> {
    const ended = await this.ctx.registry.endSession(sessionId, reason);
    this.ctx.log.info({ instance: id, session: sessionId, reason, ended }, 'session ended by the agent');
  }

  /**
   * Takes the instance out of the registry (a failed record stays visible, with the backoff,
   * until the service has a ready instance again here), then removes its containers.
   */
  async destroy(id: string, reason: string, failure: boolean, tombstoneFor?: string): Promise<void> {
    const { ctx } = this;
    const inst = ctx.local.get(id);
    if (!inst) return;
    ctx.removing.add(id);
    // Later reports and events about this instance change nothing now.
    if (!inst.dead) { inst.dead = reason; inst.deadIsFailure = failure; }
    const hostFault = !failure && inst.deadIsHostFault === true;
    const retiring = inst.phase !== 'claimed' && !failure && !hostFault;
    try {
      if (failure || hostFault) {
        // Charged once per instance: a destroy retried while the registry is away (its
        // writes fail) must not grow the backoff on every attempt. A host fault delays this
        // host's starts, never the service's crash backoff.
        if (inst.failureWhy === undefined) {
          const cause = (failure && await this.exitReasonOf(inst)) || reason;
          const b = hostFault ? ctx.hostBackoff.failure('*', cause) : ctx.backoff.failure(inst.service, cause);
          inst.failureWhy = hostFault
            ? `${cause}; host fault ${b.failures} in a row, this host retries in ${(b.lastDelayMs / 1000).toFixed(1)} s`
            : `${cause}; failure ${b.failures} in a row, next attempt in ${(b.lastDelayMs / 1000).toFixed(1)} s`;
          ctx.log.warn({ instance: id, service: inst.service, reason: cause, noticed: reason, hostFault, failures: b.failures, backoffMs: b.lastDelayMs }, 'instance failed; backing off');
        }
        const why = inst.failureWhy;
        const slot = inst.slot;
        inst.slot = null;
        // The previous failure goes before this one is shown: a service never has two failed
        // records visible at once, not even between two writes. Both are queued at once (no
        // await in between): two instances failing together (an engine restart) each see the
        // other, and an instance turning ready meanwhile finds this record to delete after
        // it is written.
        const prev = ctx.failedRecords.get(inst.service);
        ctx.failedRecords.set(inst.service, id);
        const prevGone = prev && prev !== id ? this.enqueue(prev, () => ctx.host.deleteInstance(inst.service, prev)) : undefined;
        await this.writeRecord(inst, { state: 'failed', reason: why, slot: null }, prevGone);
        // Stop keeping its pre-granted session lease alive (if it had one): it runs out.
        ctx.host.instanceClaimed(id);
        if (slot !== null) await ctx.host.releaseSlot(inst.service, slot, id);
      } else {
        if (retiring) {
          // Out of the ready set first, in one transaction with "no claim": a claim that
          // landed before (this agent has not seen it yet) keeps the instance for its
          // session; once out, no claim can land (a claim compares the ready record's
          // revision). Only then is the record deleted and the instance's pre-granted session
          // lease revoked: revoked under a claim, it would take the session's records with it.
          const session = await this.retireUnlessClaimed(inst);
          if (session) {
            // Left as it is until the cache shows the claim (then mark-claimed), see plan.ts.
            delete inst.dead;
            delete inst.deadIsFailure;
            inst.claimPendingSince = ctx.clock.now();
            ctx.log.info({ instance: id, session }, 'claimed while being retired: kept for its session');
            return;
          }
          // Then hand the slot back, only if it is still ours.
          const slot = inst.slot;
          inst.slot = null;
          if (slot !== null) await ctx.host.releaseSlot(inst.service, slot, id);
        }
        await this.enqueue(id, () => ctx.host.deleteInstance(inst.service, id));
        ctx.log.info({ instance: id, service: inst.service, reason }, 'instance retired');
      }
      if (tombstoneFor) {
        await ctx.registry.recordExpired({
          sessionId: tombstoneFor, service: inst.service, instanceId: id, reason: 'expired', endedAt: ctx.clock.now(),
          ...(inst.claimedAt !== undefined ? { claimedAt: inst.claimedAt } : {}), ...(inst.waitedMs !== undefined ? { waitedMs: inst.waitedMs } : {}),
          ...(inst.bootMs !== null ? { bootMs: inst.bootMs } : {}), ...(inst.readyAt !== null ? { readyAt: inst.readyAt } : {}),
        })
          .catch((err: unknown) => ctx.log.warn({ err, session: tombstoneFor }, 'could not record the expired session'));
      }
      await this.removeContainers(inst);
      ctx.local.delete(id);
    } finally {
      ctx.removing.delete(id);
    }
  }

  /**
   * The engine's account of the death when a container of the instance has stopped (OOM
   * kill, exit code, signal), whatever symptom was noticed first; undefined while both run.
   */
  private async exitReasonOf(inst: LocalInstance): Promise<string | undefined> {
    // An oom or kill event comes before the exit: give the engine a moment to record it.
    const start = this.ctx.clock.now();
    const until = start + (inst.exitExpected ? EXIT_WAIT_MS : 0);
    let killed: string | undefined;
    for (;;) {
      for (const [role, cid] of [['app', inst.appContainerId], ['sidecar', inst.sidecarContainerId]] as const) {
        if (!cid) continue;
        const d = await this.ctx.runtime.inspect(cid).catch(() => undefined);
        // The oom event may be the only sign of an OOM kill the engine flags late.
        const seen = d && inst.oomEvent === role && !d.running && d.exitCode !== null ? { ...d, oomKilled: true } : d;
        const why = exitReason(role, seen);
        if (!why) continue;
        // Killed by SIGKILL under a memory limit, not (yet) flagged as OOM: wait a moment for the flag.
        const oomPossible = !seen!.oomKilled && seen!.exitCode === 137 && this.memoryLimited(inst, role);
        if (!oomPossible) return why;
        killed ??= why;
      }
      const now = this.ctx.clock.now();
      if (killed !== undefined && now >= start + OOM_SETTLE_MS) return killed;
      if (killed === undefined && now >= until) return undefined;
      await sleep(this.ctx.clock, 100);
    }
  }

  /** Whether the container of this role runs under a memory limit (only the app's has one). */
  private memoryLimited(inst: LocalInstance, role: 'app' | 'sidecar'): boolean {
    return role === 'app' && inst.memoryMb > 0;
  }

  private async removeContainers(inst: LocalInstance): Promise<void> {
    const ids = [inst.sidecarContainerId, inst.appContainerId].filter((x): x is string => !!x);
    const results = await Promise.allSettled(ids.map((c) => this.ctx.runtime.remove(c)));
    for (const r of results) {
      // Left for the stray sweep (grace period) to remove later.
      if (r.status === 'rejected') this.ctx.log.warn({ err: r.reason, instance: inst.id }, 'could not remove a container');
    }
  }

  async removeStrays(ids: string[]): Promise<void> {
    for (const id of ids) {
      this.ctx.log.warn({ container: id.slice(0, 12) }, 'removing a container of ours that no instance owns');
      await this.ctx.runtime.remove(id).catch((err: unknown) => this.ctx.log.warn({ err, container: id }, 'could not remove a stray container'));
    }
  }

  /** Periodic anti-entropy: rewrites records the registry lost or holds differently. */
  repairRecords(): void {
    const { ctx } = this;
    void removeOrphans(ctx).then((n) => { if (n > 0) ctx.kick(); });
    for (const inst of ctx.local.values()) {
      if (ctx.busy.has(inst.id) || ctx.removing.has(inst.id) || inst.dead || inst.phase === 'creating') continue;
      const cur = ctx.cache.instances.get(inst.id)?.value;
      const want = this.record(inst);
      if (!cur || cur.state !== want.state || cur.slot !== want.slot || cur.address !== want.address) {
        ctx.log.info({ instance: inst.id, had: cur?.state ?? 'nothing' }, 'repairing the instance record');
        void this.writeRecord(inst).catch(() => undefined);
      }
    }
  }

  /** Host decommissioned: every instance goes now (claimed ones too; their sessions end). */
  async destroyAll(): Promise<void> {
    for (const inst of [...this.ctx.local.values()]) {
      if (inst.phase === 'claimed' && inst.sessionId) await this.ctx.registry.endSession(inst.sessionId, 'instance-gone').catch(() => false);
      await this.destroy(inst.id, 'agent stopped with destroyInstances', false).catch((err: unknown) => this.ctx.log.warn({ err }, 'destroy failed'));
    }
  }
}
