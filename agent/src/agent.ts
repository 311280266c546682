import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import {
  Registry, instanceKey, placementAllows, type CacheChange, type ServiceSpec, type HostRecord, type HostSession, type RegistryCache,
} from '@warmpool/registry';
import { reportToken, STATUS_PATH, type SidecarStatus, type StateReport } from '@warmpool/sidecar/protocol';
import { sleep, systemClock, type Clock } from './clock.js';
import type { ContainerEvent, ContainerRuntime } from './docker.js';
import { DockerWatch } from './docker-watch.js';
import { clusterFromPrefix, LABEL } from './labels.js';
import type { Logger } from './logger.js';
import { plan, type Action, type ContainerView, type LocalInstance, type PlanInput } from './plan.js';
import { ReportServer, type ReportVerdict } from './report-server.js';
import { fetchSidecarStatus } from './sidecar-client.js';
import { ServiceBackoff } from './backoff.js';
import { DEFAULT_TIMING, type AgentHandle, type AgentOptions, type AgentStatus, type AgentTiming } from './agent-options.js';
import { Actions, type AgentContext } from './actions.js';
import { adoptContainers } from './adoption.js';
import { buildPlanInput } from './observe.js';
import type { ImagePuller } from './image-puller.js';
import type { ImageGc } from './image-gc.js';
import { createImageParts } from './agent-images.js';

export * from './agent-options.js';

export async function startAgent(opts: AgentOptions): Promise<AgentHandle> {
  const agent = new Agent(opts);
  await agent.start();
  return agent;
}

const defaultInstanceId = (service: string): string => `${service}-${randomBytes(5).toString('hex')}`;

/**
 * One agent per host: converges this host's share of every service's warm pool through the
 * registry alone. Wiring and event plumbing live here; the decisions are plan.ts, the
 * side effects actions.ts, start-up adoption adoption.ts.
 */
export class Agent implements AgentHandle, AgentContext {
  readonly hostId: string;
  readonly cluster: string;
  readonly registry: Registry;
  readonly runtime: ContainerRuntime;
  readonly clock: Clock;
  readonly log: Logger;
  readonly timing: AgentTiming;
  readonly backoff: ServiceBackoff;
  readonly hostBackoff: ServiceBackoff;
  /** Per image: failed pulls back off here, never in the services' crash backoff. */
  readonly imageBackoff: ServiceBackoff;
  readonly images: ImagePuller;
  private readonly imageGc: ImageGc;
  readonly local = new Map<string, LocalInstance>();
  readonly busy = new Set<string>();
  readonly starting = new Set<string>();
  readonly startingGpus = new Map<string, string[]>();
  readonly removing = new Set<string>();
  readonly failedRecords = new Map<string, string>();
  readonly newInstanceId: (service: string) => string;
  cache!: RegistryCache;
  host!: HostSession;
  secret!: string;
  private readonly reports: ReportServer;
  private readonly actions: Actions;
  private containers: ContainerView | undefined;
  private strayFirstSeen = new Map<string, number>();
  private readonly docker: DockerWatch;
  private cancelWake: (() => void) | undefined;
  private wakeAt: number | undefined;
  private cancelResync: (() => void) | undefined;
  private dirty = false;
  private scheduled = false;
  private fullCheck = false;
  private closed = false;
  private inflight = new Set<Promise<unknown>>();
  private retryDelays = new Map<string, number>();
  private hostDraining = false;
  private cancelHostPublish: (() => void) | undefined;
  private readonly startedAt: number;
  private readonly random: () => number;

  constructor(readonly opts: AgentOptions) {
    this.hostId = opts.hostId;
    this.cluster = opts.cluster ?? clusterFromPrefix(opts.prefix ?? '/warmpool/');
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    const logger = opts.logger ?? pino({ level: 'silent' });
    // `warmpool agent` already names the host in its logger: no second "host" key per line.
    this.log = logger.bindings().host === opts.hostId ? logger : logger.child({ host: opts.hostId });
    this.runtime = opts.runtime;
    this.newInstanceId = opts.newInstanceId ?? defaultInstanceId;
    this.registry = new Registry(opts.store, {
      prefix: opts.prefix, now: this.clock.now, random: this.random,
      cache: { resyncMs: this.timing.cacheResyncMs, onError: (err) => this.log.warn({ err }, 'registry cache error') },
    });
    this.backoff = new ServiceBackoff({
      baseMs: this.timing.backoffBaseMs, maxMs: this.timing.backoffMaxMs, resetAfterMs: this.timing.backoffMaxMs * 2,
      now: this.clock.now, random: this.random,
    });
    this.hostBackoff = new ServiceBackoff({
      baseMs: this.timing.backoffBaseMs, maxMs: this.timing.backoffMaxMs, resetAfterMs: this.timing.backoffMaxMs * 2,
      now: this.clock.now, random: this.random,
    });
    ({ images: this.images, imageBackoff: this.imageBackoff, imageGc: this.imageGc } = createImageParts({
      runtime: this.runtime, clock: this.clock, log: this.log, random: this.random, runDir: opts.runDir,
      dockerConfigPath: opts.dockerConfigPath, timing: this.timing, onChange: () => this.publishHostSoon(),
    }));
    this.docker = new DockerWatch({
      runtime: this.runtime, labels: { [LABEL.cluster]: this.cluster }, clock: this.clock, log: this.log, retryMs: this.timing.dockerRetryMs,
      onEvent: (e) => this.onDockerEvent(e),
      onConnected: async () => { await this.refreshContainers(); this.kick(); },
    });
    this.reports = new ReportServer(opts.runDir, { report: (id, token, body) => this.onReport(id, token, body), status: () => this.status() });
    this.actions = new Actions(this);
    this.startedAt = this.clock.now();
  }

  get socketPath(): string { return this.reports.socketPath; }
  get address(): string { return this.opts.address; }
  get publishIp(): string { return this.opts.publishIp ?? this.opts.address; }
  get sidecarImage(): string { return this.opts.sidecarImage ?? 'warmpool/sidecar'; }
  get sidecarPort(): number { return this.opts.sidecarPort ?? 9000; }
  get runDir(): string { return this.opts.runDir; }
  isClosed(): boolean { return this.closed; }
  draining(): boolean { return this.cache.drains.has(this.hostId); }
  keyFor(instanceId: string): string { return instanceKey(this.secret, instanceId); }

  private hostRecord(): HostRecord {
    return {
      id: this.hostId, address: this.opts.address, capacity: { ...this.opts.capacity, gpus: this.opts.gpus?.length ?? 0 },
      gpus: this.opts.gpus ?? [], labels: this.opts.labels ?? {},
      draining: this.hostDraining, startedAt: this.startedAt, agentVersion: this.opts.version ?? '0.1.0',
      images: Object.fromEntries(this.images.states),
    };
  }

  /** The host record carries image states and pull progress: rewritten at most every pullProgressMs. */
  private publishHostSoon(): void {
    if (this.cancelHostPublish || this.closed || !this.host) return;
    this.cancelHostPublish = this.clock.setTimeout(() => {
      this.cancelHostPublish = undefined;
      if (this.closed) return;
      void this.host.putHost(this.hostRecord()).catch((err: unknown) => this.log.warn({ err }, 'could not update the host record'));
    }, this.timing.pullProgressMs);
  }

  async start(): Promise<void> {
    this.cache = await this.registry.cache();
    this.secret = await this.registry.clusterSecret();
    this.hostDraining = this.draining();
    this.host = await this.registry.openHost(this.hostRecord(), this.opts.leaseTtlSec ?? 10);
    this.host.on('error', (err: unknown) => this.log.warn({ err }, 'host lease recovery failed; retrying'));
    this.host.on('lost', (reason: string) => {
      this.log.error({ reason }, 'host lease lost: re-granting and re-putting every record');
      // Slots vanish with the lease: until they are back, their absence means nothing.
      for (const i of this.local.values()) i.slotSeen = false;
    });
    this.host.on('restored', () => { this.log.info('host lease restored'); this.kick(); });
    this.host.on('slot-lost', (service: string, slot: number, instanceId: string) => {
      const inst = this.local.get(instanceId);
      // A claimed instance serves a session: it was never surplus, whatever its slot did.
      if (inst?.phase === 'claimed' || this.cache.claims.has(instanceId)) return;
      this.log.warn({ service, slot, instance: instanceId }, 'warm slot taken by another host while our lease was lost: retiring the surplus instance');
      if (inst && !inst.dead) { inst.dead = 'warm slot taken by another host after a lease loss'; inst.deadIsFailure = false; }
      this.kick();
    });
    await this.reports.listen();
    await adoptContainers(this);
    await this.docker.connect();
    this.cache.on('change', this.onCacheChange);
    this.scheduleResync();
    this.log.info({ cluster: this.cluster, address: this.opts.address, capacity: this.opts.capacity, adopted: this.local.size }, 'agent started');
    this.kick();
  }

  // ---- the reconcile loop -----------------------------------------------------------

  /** Asks for a reconcile soon; many kicks in one tick cost one plan. */
  kick(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.dirty || this.closed) return;
      this.dirty = false;
      try {
        this.reconcile();
      } catch (err) {
        this.log.error({ err }, 'reconcile failed');
      }
    });
  }

  /** Whether this host could ever run an instance of the service (placement labels, GPU inventory). */
  private mayHost(spec: ServiceSpec): boolean {
    if (spec.placement && !placementAllows(spec.placement, this.opts.labels ?? {})) return false;
    return (spec.resources.gpus ?? 0) <= (this.opts.gpus ?? []).length;
  }

  private reconcile(): void {
    const input: PlanInput = buildPlanInput(this, this.containers);
    const specs = [...this.cache.services.values()].map((v) => v.value);
    // Ahead of need: a host that takes instances has the image of every service it may run
    // (placement labels match, enough GPUs in its inventory) before the first one boots.
    if (!input.draining) this.images.prefetch(specs.filter((s) => this.mayHost(s)));
    this.actions.abandonUnwantedPulls();
    this.images.retain(new Set(specs.map((s) => s.image)));
    const result = plan(input);
    const full = this.fullCheck;
    this.fullCheck = false;
    for (const a of result.actions) this.dispatch(a);
    if (full) this.actions.repairRecords();
    this.scheduleWake(result.wakeAt);
  }

  private dispatch(a: Action): void {
    switch (a.type) {
      case 'start':
        this.starting.add(a.service);
        if (a.gpus.length) this.startingGpus.set(a.service, a.gpus);
        this.track(this.guarded(`start:${a.service}`, () => this.actions.start(a)).finally(() => {
          this.starting.delete(a.service);
          this.startingGpus.delete(a.service);
          this.kick();
        }));
        return;
      case 'remove-strays':
        for (const id of a.containerIds) this.strayFirstSeen.delete(id);
        this.track(this.actions.removeStrays(a.containerIds).finally(() => void this.refreshContainers().then(() => this.kick())));
        return;
      default:
        this.exclusive(a.instanceId, () => this.actions.run(a));
    }
  }

  /** Runs an action on one instance; the planner leaves the instance alone meanwhile. */
  exclusive(id: string, fn: () => Promise<void>): void {
    this.busy.add(id);
    this.track(this.guarded(id, fn).finally(() => {
      this.busy.delete(id);
      this.kick();
    }));
  }

  /**
   * A failed action (registry or engine unreachable) is retried by the next plan, but not
   * before a delay that doubles per consecutive failure (200 ms to 10 s): never a tight loop.
   */
  private async guarded(key: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
      this.retryDelays.delete(key);
    } catch (err) {
      const delay = this.retryDelays.get(key) ?? 200;
      this.retryDelays.set(key, Math.min(delay * 2, 10_000));
      this.log.error({ err, action: key, retryMs: delay }, 'action failed; will retry');
      if (!this.closed) await sleep(this.clock, delay);
    }
  }

  track<T>(p: Promise<T>): void {
    const q = p.catch((err: unknown) => this.log.error({ err }, 'action failed'));
    this.inflight.add(q);
    void q.finally(() => this.inflight.delete(q));
  }

  private scheduleWake(at: number | undefined): void {
    if (at === undefined || this.closed) return;
    if (this.wakeAt !== undefined && this.wakeAt <= at && this.wakeAt > this.clock.now()) return;
    this.cancelWake?.();
    this.wakeAt = at;
    this.cancelWake = this.clock.setTimeout(() => { this.wakeAt = undefined; this.kick(); }, Math.max(0, at - this.clock.now()) + 5);
  }

  private scheduleResync(): void {
    if (this.closed) return;
    const ms = this.timing.resyncMs * (0.8 + 0.4 * this.random());
    this.cancelResync = this.clock.setTimeout(() => {
      void this.resync().finally(() => this.scheduleResync());
    }, ms);
  }

  async resync(): Promise<void> {
    await this.refreshContainers();
    await this.pollBooting();
    const draining = this.draining();
    if (draining !== this.hostDraining) {
      this.hostDraining = draining;
      await this.host.putHost(this.hostRecord()).catch((err: unknown) => this.log.warn({ err }, 'could not update the host record'));
    }
    this.fullCheck = true;
    this.kick();
    const wanted = new Set([...this.cache.services.values()].map((v) => v.value.image));
    await this.imageGc.sweep(wanted).catch((err: unknown) => this.log.warn({ err }, 'image garbage collection failed'));
  }

  /**
   * Reports can be lost (acknowledged by a previous agent process just before it stopped):
   * ask the sidecars of instances still booting for their state.
   */
  private async pollBooting(): Promise<void> {
    const booting = [...this.local.values()].filter((i) => i.phase === 'booting' && i.address && !i.dead && !this.busy.has(i.id));
    await Promise.all(booting.map(async (inst) => {
      const s = await fetchSidecarStatus<SidecarStatus>(inst.address!, STATUS_PATH, 1000);
      if (s?.state === 'ready' && inst.phase === 'booting' && !inst.dead && s.readyAt !== null) {
        this.applyReady(inst, s.readyAt, s.bootMs, s.warmupMs ?? null);
        this.actions.becameReady(inst);
      } else if (s?.state === 'warming' && inst.phase === 'booting' && inst.warmingSince === undefined && !inst.dead) {
        this.applyWarming(inst, s.since);
      } else if (s && (s.state === 'failed' || s.state === 'unhealthy')) {
        this.markDead(inst, `sidecar reports ${s.state}: ${s.reason ?? ''}`.trim(), true);
      }
    }));
  }

  // ---- observations ------------------------------------------------------------------

  private onCacheChange = (c: CacheChange): void => {
    if (c.kind === 'drain' && c.parts[0] === this.hostId) {
      const draining = this.draining();
      if (draining !== this.hostDraining) {
        this.hostDraining = draining;
        this.log.info({ draining }, draining ? 'host draining: no new instances' : 'host accepting instances again');
        void this.host.putHost(this.hostRecord()).catch((err: unknown) => this.log.warn({ err }, 'could not update the host record'));
      }
    }
    this.kick();
  };

  /** Lists our containers on this host: which instances have running containers, and strays. */
  async refreshContainers(): Promise<void> {
    const listedAt = this.clock.now();
    let rows;
    try {
      rows = await this.runtime.list({ [LABEL.cluster]: this.cluster, [LABEL.host]: this.hostId });
    } catch (err) {
      this.log.warn({ err }, 'could not list containers');
      return;
    }
    const byInstance = new Map<string, { app: boolean; sidecar: boolean }>();
    const strays: { id: string; firstSeenAt: number }[] = [];
    const seen = new Set<string>();
    for (const r of rows) {
      const id = r.labels[LABEL.instance] ?? '';
      if (this.local.has(id)) {
        const e = byInstance.get(id) ?? { app: false, sidecar: false };
        if (r.labels[LABEL.role] === 'app') e.app = r.running;
        if (r.labels[LABEL.role] === 'sidecar') e.sidecar = r.running;
        byInstance.set(id, e);
        continue;
      }
      seen.add(r.id);
      const first = this.strayFirstSeen.get(r.id) ?? listedAt;
      this.strayFirstSeen.set(r.id, first);
      strays.push({ id: r.id, firstSeenAt: first });
    }
    for (const id of [...this.strayFirstSeen.keys()]) if (!seen.has(id)) this.strayFirstSeen.delete(id);
    this.containers = { listedAt, byInstance, strays };
  }

  private onDockerEvent = (e: ContainerEvent): void => {
    if (e.labels[LABEL.host] !== this.hostId) return;
    const inst = this.local.get(e.labels[LABEL.instance] ?? '');
    if (!inst || this.removing.has(inst.id)) return;
    const role = e.labels[LABEL.role] ?? 'container';
    let reason: string | undefined;
    if (e.action === 'die') reason = `${role} container exited (code ${e.exitCode ?? '?'})`;
    else if (e.action === 'oom') reason = `${role} container ran out of memory`;
    else if (e.action === 'destroy') reason = `${role} container was removed`;
    else if (e.action === 'kill' && ['9', '15', 'SIGKILL', 'SIGTERM', 'KILL', 'TERM'].includes(e.signal ?? '')) reason = `${role} container killed (signal ${e.signal})`;
    if (reason && (e.action === 'oom' || e.action === 'kill')) inst.exitExpected = true;
    if (e.action === 'oom') inst.oomEvent = role;
    if (reason) this.markDead(inst, reason, true);
  };

  /** The instance must go; it leaves the ready set at once (the destroy follows in the loop). */
  markDead(inst: LocalInstance, reason: string, failure: boolean): void {
    if (inst.dead || this.removing.has(inst.id)) return;
    inst.dead = reason;
    inst.deadIsFailure = failure;
    this.log.warn({ instance: inst.id, service: inst.service, reason }, 'instance dead');
    if (inst.phase === 'ready' || inst.phase === 'booting') this.actions.writeRecord(inst, { state: 'failed', reason });
    this.kick();
  }

  private onReport(id: string, token: string | undefined, r: StateReport): ReportVerdict {
    const inst = this.local.get(id);
    if (!inst) return { status: 404, message: `instance ${id} is not known to this agent (yet)` };
    if (token !== reportToken(this.keyFor(id), id)) return { status: 403, message: 'invalid report token' };
    const starting = !inst.dead && (inst.phase === 'booting' || inst.phase === 'creating') && inst.readyAt === null;
    if (r.state === 'ready' && starting) {
      this.applyReady(inst, r.at, r.bootMs, r.warmupMs ?? null);
      // A report may beat the end of the launch (fast apps): the launch applies it.
      if (inst.phase === 'booting') this.actions.becameReady(inst);
    } else if (r.state === 'warming' && starting && inst.warmingSince === undefined) {
      this.applyWarming(inst, r.at);
    } else if (r.state === 'failed' || r.state === 'unhealthy') {
      // A failing liveness probe is often the first sign of an app that is about to exit (an
      // OOM kill thrashes first): the engine's exit state, if it comes, names the real cause.
      if (r.state === 'unhealthy') inst.exitExpected = true;
      this.markDead(inst, `sidecar reports ${r.state}: ${r.reason ?? ''}`.trim(), true);
    }
    return { status: 204 };
  }

  /** The sidecar's ready report: ready at `at`, after a warm-up of warmupMs (bootMs is recomputed from the engine's start). */
  private applyReady(inst: LocalInstance, at: number, bootMs: number | null, warmupMs: number | null): void {
    inst.readyAt = at;
    inst.bootMs = bootMs;
    inst.readinessAt = at - (warmupMs ?? 0);
    inst.stages = { ...inst.stages, warmupMs };
  }

  /** Ready to the readiness probe; the warm-up requests run now (record state 'warming'). */
  private applyWarming(inst: LocalInstance, at: number): void {
    inst.warmingSince = at;
    inst.readinessAt = at;
    if (inst.startedAt !== null) inst.stages = { ...inst.stages, bootMs: Math.max(0, at - inst.startedAt) };
    this.log.info({ instance: inst.id, service: inst.service }, 'instance warming up');
    if (inst.phase === 'booting') void this.actions.writeRecord(inst).catch(() => undefined);
    this.kick();
  }

  status(): AgentStatus {
    return {
      hostId: this.hostId, cluster: this.cluster, draining: this.hostDraining, capacity: this.opts.capacity,
      instances: [...this.local.values()].map((i) => ({ ...i })), backoff: this.backoff.snapshot(), hostBackoff: this.hostBackoff.snapshot(),
      images: Object.fromEntries(this.images.states), imageBackoff: this.imageBackoff.snapshot(),
      strays: this.containers?.strays.map((s) => s.id) ?? [], docker: this.docker.connected ? 'connected' : 'reconnecting',
    };
  }

  async close(opts: { destroyInstances?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelWake?.();
    this.cancelResync?.();
    this.cancelHostPublish?.();
    this.images.close();
    this.docker.close();
    this.cache?.off('change', this.onCacheChange);
    // Let launches and destroys in flight finish, so no container is left half made.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => { timer = setTimeout(r, 15_000); })]);
    clearTimeout(timer);
    if (opts.destroyInstances) await this.actions.destroyAll();
    await this.reports.close();
    await this.host?.close({ revoke: opts.destroyInstances === true });
    await this.registry.close();
    this.log.info({ destroyInstances: opts.destroyInstances === true }, 'agent stopped');
  }
}
