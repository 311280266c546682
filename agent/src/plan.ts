import { placementAllows, type InstanceStages, type PullProgress, type ServiceSpec } from '@warmpool/registry';

/**
 * The agent's reconciler: a pure function from what should be (services in the registry)
 * and what is (this host's instances, the fleet's slots and claims, the containers Docker
 * lists) to the actions that converge them. No I/O, no clock, no randomness: every input is
 * passed in, so it is tested with plain objects (agent/test/plan.test.ts). The agent runs
 * it after every registry change, Docker event and sidecar report, and periodically.
 */

/** Where one of this host's instances is in its life (see docs/lifecycle-instance.md). */
/** pulling: waiting for its image (before any container exists; the boot clock has not started). */
export type Phase = 'creating' | 'pulling' | 'booting' | 'ready' | 'claimed';

export interface LocalInstance {
  id: string;
  /** Set once its failure was charged to the service's backoff (a retried destroy charges nothing). */
  failureWhy?: string;
  service: string;
  phase: Phase;
  /** Warm slot held while unclaimed; null once claimed (or released on a draining host). */
  slot: number | null;
  /** The registry cache has shown the slot held by this instance (its absence later means something). */
  slotSeen: boolean;
  specHash: string;
  memoryMb: number;
  /** GPU ids this instance holds exclusively until it is gone from `local`. */
  gpus?: string[];
  /** Epoch ms the slot was taken. */
  createdAt: number;
  /** Epoch ms the app container started, as the engine reports it (boot timeout counts from here). */
  startedAt: number | null;
  /** Epoch ms the sidecar reported the app ready to its readiness probe and began the warm-up. */
  warmingSince?: number;
  /** Epoch ms the readiness probe first succeeded (before any warm-up). */
  readinessAt?: number;
  /** How long each stage took (see InstanceStages). */
  stages?: InstanceStages;
  /** Epoch ms both containers were running (container lists older than this prove nothing). */
  launchedAt: number | null;
  readyAt: number | null;
  bootMs: number | null;
  appContainerId?: string;
  sidecarContainerId?: string;
  /** host:port of the sidecar. */
  address?: string;
  sessionId?: string;
  /**
   * A retirement found this instance claimed in the store before this agent's cache showed
   * the claim: since when (epoch ms). The instance is left alone until the cache shows the
   * claim (then it is marked claimed) or CLAIM_PENDING_MS have passed.
   */
  claimPendingSince?: number;
  /** When the session claimed it and how long its request had waited (for the expiry tombstone). */
  claimedAt?: number;
  waitedMs?: number;
  /** Why the instance must go (container died, sidecar reported failure...). */
  dead?: string;
  /** The death is the image's fault (counts towards the service's backoff). */
  deadIsFailure?: boolean;
  /** Death noticed before the exit may be recorded (an oom or kill event, a failing liveness probe): the exit is awaited briefly for its reason. */
  exitExpected?: boolean;
  /** The engine sent an oom event for this container role ('app' or 'sidecar'). */
  oomEvent?: string;
  /** The death is the host's fault (engine too slow, disk full): shown, charged to the host backoff only. */
  deadIsHostFault?: boolean;
  /** While pulling: the pull it waits for. */
  pull?: PullProgress | null;
  /** The image pull failed: the failure is charged to the image's backoff, not the service's. */
  pullFailed?: boolean;
}

export interface ServiceTarget {
  spec: ServiceSpec;
  hash: string;
  /**
   * Warm slots of the service now (registry/src/pool-view.ts: pool size + waiting sessions,
   * capped by the fleet's room) and whether its `warm` is a static number. Absent: the
   * static `warm` number, no waiting sessions.
   */
  pool?: { slots: number; static: boolean; waiting: number; recheckAt?: number | null };
}

/** Warm slots of a service: its pool's, else the static `warm` (0 for a policy with no view). */
function slotsOf(t: ServiceTarget): number {
  return t.pool?.slots ?? (typeof t.spec.warm === 'number' ? t.spec.warm : 0);
}

/**
 * Instances to retire because the pool holds more slots than it has now: the holders of
 * the highest slots at or above the count, as many as the surplus. Every agent computes the
 * same set from the same slot map; each acts on its own instances only. A holder above the
 * count that is not surplus keeps its slot (it fills a hole a claim left below the count).
 */
function surplusHolders(input: PlanInput): Set<string> {
  const out = new Set<string>();
  for (const [name, target] of input.services) {
    const count = slotsOf(target);
    const held = new Map<number, string>(input.fleet.slots.get(name) ?? []);
    for (const i of input.local.values()) if (i.service === name && i.slot !== null && !held.has(i.slot)) held.set(i.slot, i.id);
    let surplus = held.size - count;
    if (surplus <= 0) continue;
    for (const n of [...held.keys()].filter((k) => k >= count).sort((a, b) => b - a)) {
      if (surplus-- <= 0) break;
      out.add(held.get(n)!);
    }
  }
  return out;
}

/** A host as other agents see it in the registry (used to spread instances). */
export interface HostLoad {
  id: string;
  /** Not draining, and below its instance capacity. */
  accepting: boolean;
  /** Instances per service (failed ones excluded). */
  perService: ReadonlyMap<string, number>;
  /** Its labels (placement). */
  labels?: Readonly<Record<string, string>>;
  /** GPUs not given to any instance (its inventory minus its instances' GPUs). */
  freeGpus?: number;
}

export interface FleetView {
  /** service -> slot -> holder instance id */
  slots: ReadonlyMap<string, ReadonlyMap<number, string>>;
  /** instance id -> claiming session id (live sessions only) */
  claims: ReadonlyMap<string, string>;
  /** instances whose session was ended (claim marked ended): never claimable again */
  endedClaims?: ReadonlySet<string>;
  /** session id -> hard end (epoch ms) */
  sessionExpiry: ReadonlyMap<string, number>;
  /** sessions that have a tombstone (ended explicitly or recorded as expired) */
  tombstones: ReadonlySet<string>;
  hosts: readonly HostLoad[];
  /** service -> ready-and-unclaimed instances across the fleet */
  readyUnclaimed: ReadonlyMap<string, number>;
}

export interface ContainerView {
  /** Epoch ms the list was taken (started). */
  listedAt: number;
  /** instance id -> which of its containers run */
  byInstance: ReadonlyMap<string, { app: boolean; sidecar: boolean }>;
  /** Our cluster's containers on this host that belong to no instance we know, with when we first saw them. */
  strays: readonly { id: string; firstSeenAt: number }[];
}

export interface PlanInput {
  now: number;
  hostId: string;
  capacity: { instances: number; memoryMb: number };
  /** This host's GPU ids (its inventory); none when absent. */
  gpuInventory?: readonly string[];
  /** This host's labels (placement.hostLabels must all match). */
  hostLabels?: Readonly<Record<string, string>>;
  draining: boolean;
  services: ReadonlyMap<string, ServiceTarget>;
  fleet: FleetView;
  local: ReadonlyMap<string, LocalInstance>;
  /** Instances with an action in flight: left alone this round. */
  busy: ReadonlySet<string>;
  /** Services with a start in flight (at most one per service at a time). */
  starting: ReadonlySet<string>;
  /** GPUs reserved by those starts (service -> ids), until their instance is in `local`. */
  startingGpus?: ReadonlyMap<string, readonly string[]>;
  /** service -> no start before this time */
  backoffUntil: ReadonlyMap<string, number>;
  containers: ContainerView | undefined;
  timing: { spreadStepMs: number; maxSpreadMs: number; strayGraceMs: number };
}

export type Action =
  /** Take warm slot `slot` (after `delayMs`, to let emptier hosts win) and boot an instance into it, on GPUs `gpus`. */
  | { type: 'start'; service: string; slot: number; delayMs: number; gpus: string[] }
  /** A session claimed the instance: its slot is consumed; record it as claimed. */
  | { type: 'mark-claimed'; instanceId: string; sessionId: string }
  /** Draining host: give the slot back so another host boots a replacement; the instance stays claimable. */
  | { type: 'release-slot'; instanceId: string }
  /** End the session on the instance (max lifetime passed, or the instance died under it). */
  | { type: 'end-session'; instanceId: string; sessionId: string; reason: 'expired' | 'instance-gone' }
  /** Destroy the containers and the record. failure: counts for backoff; tombstone: write one if missing. */
  | { type: 'destroy'; instanceId: string; reason: string; failure: boolean; tombstoneFor?: string }
  /** Containers of our cluster on this host that no instance owns, past the grace period. */
  | { type: 'remove-strays'; containerIds: string[] };

export interface Plan {
  actions: Action[];
  /** When the plan must run again even if nothing changes (boot deadline, expiry, backoff end). */
  wakeAt: number | undefined;
}

/** Slack over the warm-up requests' own timeouts (the sidecar reports their failure itself). */
const WARMUP_SLACK_MS = 5_000;

/** The agent's backstop for a warm-up: every request's timeout, plus slack. */
export function warmupBudgetMs(spec: ServiceSpec): number {
  return (spec.warmup ?? []).reduce((a, w) => a + w.timeoutSec * 1000, 0) + WARMUP_SLACK_MS;
}

/** Deterministic per-host choice among free slots, so racing agents tend to pick different ones. */
function pickSlot(free: number[], hostId: string): number {
  let h = 0;
  for (const c of hostId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return free[h % free.length]!;
}

/**
 * How long an instance found claimed in the store waits for the claim to show in the cache
 * (ms). The cache is normally milliseconds behind; after this the agent decides again from
 * the store (a claim that ended and went meanwhile no longer holds the instance).
 */
export const CLAIM_PENDING_MS = 30_000;

export function plan(input: PlanInput): Plan {
  const actions: Action[] = [];
  let wakeAt: number | undefined;
  const wake = (t: number): void => { if (wakeAt === undefined || t < wakeAt) wakeAt = t; };
  const { now, fleet, local, services } = input;
  const surplus = surplusHolders(input);
  // A demand-driven pool's size may fall with no registry change (its cool-down ends): plan again then.
  for (const t of services.values()) if (t.pool?.recheckAt != null) wake(t.pool.recheckAt);

  // Ready instances of ours without a slot, per service (drain hand-over).
  const unslottedReady = new Map<string, number>();
  for (const i of local.values()) {
    if (i.phase === 'ready' && i.slot === null) unslottedReady.set(i.service, (unslottedReady.get(i.service) ?? 0) + 1);
  }

  for (const inst of local.values()) {
    if (input.busy.has(inst.id)) continue;
    const claimSession = fleet.claims.get(inst.id);

    if (inst.phase === 'claimed') {
      const sessionId = inst.sessionId!;
      if (claimSession === undefined) {
        // Session over (ended, idle lease expired, or ended by us): one instance, one session.
        actions.push({
          type: 'destroy', instanceId: inst.id, reason: inst.dead ?? 'session ended', failure: inst.deadIsFailure ?? false,
          ...(fleet.tombstones.has(sessionId) ? {} : { tombstoneFor: sessionId }),
        });
      } else if (inst.dead) {
        actions.push({ type: 'end-session', instanceId: inst.id, sessionId, reason: 'instance-gone' });
      } else {
        const expiry = fleet.sessionExpiry.get(sessionId);
        if (expiry !== undefined && expiry <= now) actions.push({ type: 'end-session', instanceId: inst.id, sessionId, reason: 'expired' });
        else if (expiry !== undefined) wake(expiry);
      }
      continue;
    }

    if (claimSession !== undefined) {
      actions.push({ type: 'mark-claimed', instanceId: inst.id, sessionId: claimSession });
      continue;
    }

    if (inst.claimPendingSince !== undefined && now < inst.claimPendingSince + CLAIM_PENDING_MS) {
      // Claimed in the store, not yet in the cache: neither retire nor replace it meanwhile.
      wake(inst.claimPendingSince + CLAIM_PENDING_MS);
      continue;
    }

    if (fleet.endedClaims?.has(inst.id)) {
      // Claimed and ended before this agent saw the claim (it was down or stalled).
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'session ended', failure: false });
      continue;
    }

    if (inst.dead) {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: inst.dead, failure: inst.deadIsFailure ?? false });
      continue;
    }

    if (inst.phase === 'creating' || inst.phase === 'pulling') continue;

    // Containers missing or stopped, in a list taken after both were running.
    const c = input.containers;
    if (c && inst.launchedAt !== null && c.listedAt > inst.launchedAt) {
      const seen = c.byInstance.get(inst.id);
      if (!seen?.app || !seen.sidecar) {
        actions.push({ type: 'destroy', instanceId: inst.id, reason: `container ${!seen?.app ? 'app' : 'sidecar'} is gone or stopped`, failure: true });
        continue;
      }
    }

    const target = services.get(inst.service);
    if (!target) {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'service removed', failure: false });
      continue;
    }
    const spec = target.spec;

    if (inst.phase === 'booting') {
      // The app's boot counts from its container's start (container creation has its own
      // timeout); warm-ups from the warm-up's start, each with its own timeout.
      const warming = inst.warmingSince !== undefined;
      const deadline = warming
        ? inst.warmingSince! + warmupBudgetMs(spec)
        : (inst.startedAt ?? inst.createdAt) + spec.bootTimeoutSec * 1000;
      if (now >= deadline) {
        const reason = warming
          ? `warm-up timeout: not done after ${Math.round(warmupBudgetMs(spec) / 1000)} s`
          : `boot timeout: not ready after ${spec.bootTimeoutSec} s`;
        actions.push({ type: 'destroy', instanceId: inst.id, reason, failure: true });
        continue;
      }
      wake(deadline);
    }

    if (inst.specHash !== target.hash) {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'service spec changed', failure: false });
      continue;
    }

    if (!placementAllows(spec.placement ?? { hostLabels: {} }, input.hostLabels ?? {})) {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'placement: this host no longer has the labels the service asks for', failure: false });
      continue;
    }

    if (inst.slot !== null) {
      const holder = fleet.slots.get(inst.service)?.get(inst.slot);
      if (inst.slotSeen && holder !== inst.id) {
        // The claim that deletes a slot writes the claim in the same transaction, and no claim
        // is here: the slot went with a lost lease, or a claim came and went unseen.
        actions.push({ type: 'destroy', instanceId: inst.id, reason: 'warm slot lost', failure: false });
      } else if (surplus.has(inst.id)) {
        // A static pool with nobody waiting retires its surplus at once (as ever); a
        // demand-driven one never destroys a boot to shrink: it retires the instance once ready.
        const exact = target.pool === undefined || (target.pool.static && target.pool.waiting === 0);
        if (exact || inst.phase === 'ready') {
          actions.push({ type: 'destroy', instanceId: inst.id, reason: exact ? 'warm count lowered' : 'pool shrunk', failure: false });
        }
      } else if (input.draining) {
        actions.push({ type: 'release-slot', instanceId: inst.id });
      }
      continue;
    }

    // No slot: only a draining host keeps such an instance, until other hosts have replaced it.
    if (!input.draining) {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'holds no warm slot', failure: false });
    } else if (inst.phase !== 'ready') {
      actions.push({ type: 'destroy', instanceId: inst.id, reason: 'host draining', failure: false });
    } else {
      const elsewhere = (fleet.readyUnclaimed.get(inst.service) ?? 0) - (unslottedReady.get(inst.service) ?? 0);
      if (elsewhere >= slotsOf(target)) {
        actions.push({ type: 'destroy', instanceId: inst.id, reason: 'host draining: replaced elsewhere', failure: false });
        unslottedReady.set(inst.service, (unslottedReady.get(inst.service) ?? 1) - 1);
      }
    }
  }

  // Strays: containers of ours that no instance owns, once the grace period is over.
  if (input.containers) {
    const due = input.containers.strays.filter((s) => now - s.firstSeenAt >= input.timing.strayGraceMs);
    if (due.length) actions.push({ type: 'remove-strays', containerIds: due.map((s) => s.id) });
    for (const s of input.containers.strays) if (now - s.firstSeenAt < input.timing.strayGraceMs) wake(s.firstSeenAt + input.timing.strayGraceMs);
  }

  if (!input.draining) planStarts(input, actions, wake);
  return { actions, wakeAt };
}

function planStarts(input: PlanInput, actions: Action[], wake: (t: number) => void): void {
  const { local, fleet, now } = input;
  let count = local.size + input.starting.size;
  let memory = 0;
  const perService = new Map<string, number>();
  const localSlots = new Map<string, Set<number>>();
  // GPUs are exclusive: held from the plan that reserves them until the instance is gone.
  const usedGpus = new Set<string>();
  for (const ids of input.startingGpus?.values() ?? []) for (const g of ids) usedGpus.add(g);
  for (const i of local.values()) {
    for (const g of i.gpus ?? []) usedGpus.add(g);
    memory += i.memoryMb;
    perService.set(i.service, (perService.get(i.service) ?? 0) + 1);
    if (i.slot !== null) {
      let s = localSlots.get(i.service);
      if (!s) localSlots.set(i.service, (s = new Set()));
      s.add(i.slot);
    }
  }
  for (const svc of input.starting) {
    const spec = input.services.get(svc)?.spec;
    if (spec) memory += spec.resources.memoryMb;
  }

  const names = [...input.services.keys()].sort();
  for (const name of names) {
    const target = input.services.get(name)!;
    const { spec } = target;
    const slots = slotsOf(target);
    if (slots <= 0 || input.starting.has(name)) continue;
    const placement = spec.placement ?? { hostLabels: {} };
    if (!placementAllows(placement, input.hostLabels ?? {})) continue;
    const until = input.backoffUntil.get(name);
    if (until !== undefined && until > now) { wake(until); continue; }
    const held = fleet.slots.get(name);
    const mine = localSlots.get(name);
    let holders = held?.size ?? 0;
    for (const n of mine ?? []) if (!held?.has(n)) holders++;
    // Holders above the count (kept, see surplusHolders) fill the holes below it.
    if (holders >= slots) continue;
    const free: number[] = [];
    for (let n = 0; n < slots; n++) if (!held?.has(n) && !mine?.has(n)) free.push(n);
    if (!free.length) continue;
    if (count >= input.capacity.instances) return;
    if (input.capacity.memoryMb > 0 && memory + spec.resources.memoryMb > input.capacity.memoryMb) continue;
    const myCount = perService.get(name) ?? 0;
    if (myCount >= spec.maxPerHost) continue;
    const needGpus = spec.resources.gpus ?? 0;
    const freeGpus = (input.gpuInventory ?? []).filter((g) => !usedGpus.has(g));
    if (freeGpus.length < needGpus) continue;

    // Spread: wait in proportion to how many more instances of this service we run than the
    // emptiest host that could take one, so emptier hosts tend to win the slot.
    let fewest = myCount;
    for (const h of fleet.hosts) {
      if (h.id === input.hostId || !h.accepting || !placementAllows(placement, h.labels ?? {})) continue;
      if (needGpus > 0 && (h.freeGpus ?? 0) < needGpus) continue;
      const n = h.perService.get(name) ?? 0;
      if (n < spec.maxPerHost && n < fewest) fewest = n;
    }
    const delayMs = Math.min(input.timing.maxSpreadMs, input.timing.spreadStepMs * (myCount - fewest));
    const gpus = freeGpus.slice(0, needGpus);
    for (const g of gpus) usedGpus.add(g);
    actions.push({ type: 'start', service: name, slot: pickSlot(free, input.hostId), delayMs, gpus });
    count++;
    memory += spec.resources.memoryMb;
  }
}
