import { poolView, type ServiceSpec } from '@warmpool/registry';
import { specHash } from './container-spec.js';
import type { AgentContext } from './actions.js';
import type { ContainerView, HostLoad, PlanInput, ServiceTarget } from './plan.js';

const hashes = new WeakMap<ServiceSpec, string>();
function hashOf(spec: ServiceSpec): string {
  let h = hashes.get(spec);
  if (h === undefined) hashes.set(spec, (h = specHash(spec)));
  return h;
}

/** The service's own crash backoff, or the host's (a host fault delays every service here), whichever ends later. */
function backoffUntil(ctx: AgentContext, names: Iterable<string>): Map<string, number> {
  const out = ctx.backoff.active();
  const host = ctx.hostBackoff.active().get('*');
  if (host !== undefined) for (const n of names) out.set(n, Math.max(out.get(n) ?? 0, host));
  return out;
}

/**
 * Snapshots what the planner needs from the registry cache and the agent's own state. Also
 * notes, per instance, that the cache has shown its slot held by it: from then on the slot's
 * absence means the slot was consumed or lost.
 */
export function buildPlanInput(ctx: AgentContext, containers: ContainerView | undefined): PlanInput {
  const cache = ctx.cache;
  const services = new Map<string, ServiceTarget>();
  const now = ctx.clock.now();
  for (const [name, v] of cache.services) {
    const pool = poolView(cache, v.value, now);
    services.set(name, { spec: v.value, hash: hashOf(v.value), pool: { slots: pool.slots, static: pool.static, waiting: pool.waiting, recheckAt: pool.sizing?.recheckAt ?? null } });
  }

  const slots = new Map<string, Map<number, string>>();
  for (const v of cache.slots.values()) {
    const s = v.value;
    let m = slots.get(s.service);
    if (!m) slots.set(s.service, (m = new Map()));
    m.set(s.slot, s.instanceId);
  }
  for (const inst of ctx.local.values()) {
    if (inst.slot !== null && slots.get(inst.service)?.get(inst.slot) === inst.id) inst.slotSeen = true;
  }

  const claims = new Map<string, string>();
  const endedClaims = new Set<string>();
  for (const [id, v] of cache.claims) {
    if (v.value.ended) endedClaims.add(id);
    else claims.set(id, v.value.sessionId);
  }
  const sessionExpiry = new Map<string, number>();
  for (const inst of ctx.local.values()) {
    if (inst.sessionId) {
      const s = cache.sessions.get(inst.sessionId)?.value;
      if (s) sessionExpiry.set(s.id, s.expiresAt);
    }
  }
  const tombstones = new Set<string>();
  for (const inst of ctx.local.values()) if (inst.sessionId && cache.tombstones.has(inst.sessionId)) tombstones.add(inst.sessionId);

  const gpusUsed = new Map<string, number>();
  const perHost = new Map<string, Map<string, number>>();
  const totals = new Map<string, number>();
  const readyUnclaimed = new Map<string, number>();
  for (const v of cache.instances.values()) {
    const i = v.value;
    if (i.state === 'failed') continue;
    if (i.gpus?.length) gpusUsed.set(i.host, (gpusUsed.get(i.host) ?? 0) + i.gpus.length);
    let m = perHost.get(i.host);
    if (!m) perHost.set(i.host, (m = new Map()));
    m.set(i.service, (m.get(i.service) ?? 0) + 1);
    totals.set(i.host, (totals.get(i.host) ?? 0) + 1);
    if (i.state === 'ready' && !cache.claims.has(i.id)) readyUnclaimed.set(i.service, (readyUnclaimed.get(i.service) ?? 0) + 1);
  }
  const hosts: HostLoad[] = [];
  for (const [id, v] of cache.hosts) {
    const h = v.value;
    hosts.push({
      id,
      accepting: !h.draining && !cache.drains.has(id) && (totals.get(id) ?? 0) < h.capacity.instances,
      perService: perHost.get(id) ?? new Map(),
      labels: h.labels,
      freeGpus: (h.capacity.gpus ?? 0) - (gpusUsed.get(id) ?? 0),
    });
  }

  return {
    now,
    hostId: ctx.hostId,
    capacity: ctx.opts.capacity,
    gpuInventory: (ctx.opts.gpus ?? []).map((g) => g.id),
    hostLabels: ctx.opts.labels ?? {},
    draining: ctx.draining(),
    services,
    fleet: { slots, claims, endedClaims, sessionExpiry, tombstones, hosts, readyUnclaimed },
    local: ctx.local,
    busy: ctx.busy,
    starting: ctx.starting,
    startingGpus: ctx.startingGpus,
    backoffUntil: withImageBackoff(ctx, services, backoffUntil(ctx, services.keys())),
    containers,
    timing: { spreadStepMs: ctx.timing.spreadStepMs, maxSpreadMs: ctx.timing.maxSpreadMs, strayGraceMs: ctx.timing.strayGraceMs },
  };
}

/** A service whose image backs off (failed pulls) starts nothing either, until the image's backoff ends. */
function withImageBackoff(ctx: AgentContext, services: ReadonlyMap<string, ServiceTarget>, out: Map<string, number>): Map<string, number> {
  for (const [name, { spec }] of services) {
    const until = ctx.images.backoffUntil(spec.image);
    if (until !== undefined && until > (out.get(name) ?? 0)) out.set(name, until);
  }
  return out;
}
