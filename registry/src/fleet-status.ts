import type { RegistryCache } from './cache.js';
import { placementAllows } from './container-options.js';
import type { HostRecord, ServiceSpec } from './types.js';
import { poolView, type PoolView } from './pool-view.js';
import { poolCost, type PoolCost } from './pool-cost.js';
import { isStarting, startMs, typicalStages, type TypicalStages } from './instance-stages.js';
import { serviceImageStatus, type ServiceImageStatus } from './image-status.js';

export interface ServiceStatus extends ServiceImageStatus {
  name: string;
  /** Pool size now: the static `warm`, or what the demand-driven policy asks for. */
  target: number;
  /** Sessions waiting in routers' queues (they add boots on top of the target). */
  waiting: number;
  /** The pool's sizing and its explanation (docs/pool-sizing.md). */
  pool: PoolView;
  /** Hit ratio, waits and idle/busy instances (docs/pool-sizing.md#cost). */
  cost: PoolCost;
  /** Instances starting (pulling, booting or warming up). */
  booting: number;
  /** Of those, the ones sending their warm-up requests. */
  warming: number;
  ready: number;
  claimed: number;
  draining: number;
  failed: number;
  /** Typical boot time from ready instances (median bootMs), if any. */
  typicalBootMs: number | null;
  /** Median of each timed stage and of the whole start (slot taken to ready), in ms. */
  typicalStages: TypicalStages;
  /** progress: elapsed / typical start (capped at 0.99), null before any start was measured. */
  boots: { instance: string; host: string; state: string; elapsedMs: number; progress: number | null }[];
  /** Failed instances still shown, with why (e.g. a host path the host does not allow). */
  failures: { instance: string; host: string; reason: string }[];
  /** Why no registered host can take an instance (GPUs per instance, placement labels), or null. */
  unplaceable: string | null;
}

export interface HostStatus {
  id: string;
  address: string;
  draining: boolean;
  instances: number;
  capacity: number;
  /** GPUs of the host's inventory, and how many its instances hold. */
  gpus: { total: number; used: number };
}

export interface Status {
  hosts: HostStatus[];
  /** Instances holding GPUs, with their device ids. */
  gpuInstances: { instance: string; service: string; host: string; gpus: string[] }[];
  services: ServiceStatus[];
  sessions: number;
  /** Hosts marked drained (`warmpool drain`) that no agent has registered: they take no instance when one does. */
  drainedUnregistered: string[];
}

/**
 * Why none of `hosts` can run an instance of `spec` (the planner's label, GPU and memory
 * rules), or null; null when the pool is empty (`target` 0). A host whose capacity gives no
 * memory (`memoryMb` 0) takes any memory, as in fleetRoom.
 */
function unplaceable(spec: ServiceSpec, target: number, hosts: readonly HostRecord[]): string | null {
  if (!target || !hosts.length) return null;
  const want = spec.placement?.hostLabels ?? {};
  const labelled = hosts.filter((h) => placementAllows({ hostLabels: want }, h.labels ?? {}));
  if (!labelled.length) return `no host has the labels ${Object.entries(want).map(([k, x]) => `${k}=${x}`).join(',')}`;
  const withLabels = Object.keys(want).length ? ' with its labels' : '';
  const gpus = spec.resources?.gpus ?? 0;
  const most = Math.max(...labelled.map((h) => h.capacity.gpus ?? 0));
  if (gpus > most) return `needs ${gpus} GPUs per instance; the largest host${withLabels} has ${most}`;
  const memoryMb = spec.resources?.memoryMb ?? 0;
  const able = labelled.filter((h) => (h.capacity.gpus ?? 0) >= gpus);
  if (memoryMb > 0 && able.every((h) => h.capacity.memoryMb > 0 && h.capacity.memoryMb < memoryMb)) {
    const largest = Math.max(...able.map((h) => h.capacity.memoryMb));
    return `needs ${memoryMb} MB of memory per instance; the largest host${withLabels}${gpus ? ` and ${gpus} GPUs` : ''} has ${largest} MB`;
  }
  return null;
}

/** The fleet at a glance, computed from a cache snapshot (pure: tested without a store). Used by `warmpool status` and the dashboard. */
export function computeStatus(
  cache: Pick<RegistryCache, 'services' | 'hosts' | 'instances' | 'claims' | 'sessions' | 'drains' | 'tombstones' | 'demand'>,
  now: number,
): Status {
  const services: ServiceStatus[] = [];
  // Snapshots from older callers may lack the demand and tombstone maps: no waiters, no history.
  const history = { ...pick(cache), tombstones: cache.tombstones ?? new Map(), demand: cache.demand ?? new Map() };
  const hostRecords = [...cache.hosts.values()].map((v) => v.value);
  for (const [name, { value: spec }] of cache.services) {
    const insts = [...cache.instances.values()].map((v) => v.value).filter((i) => i.service === name);
    const claimed = insts.filter((i) => cache.claims.has(i.id) || i.state === 'claimed');
    const typical = typicalStages(insts.filter((i) => startMs(i) !== null));
    const starting = insts.filter((i) => isStarting(i.state));
    const pool = poolView(history, spec, now, { explain: true });
    services.push({
      name,
      target: pool.size,
      waiting: pool.waiting,
      pool,
      cost: poolCost(history, spec),
      booting: starting.length,
      warming: starting.filter((i) => i.state === 'warming').length,
      ready: insts.filter((i) => i.state === 'ready' && !cache.claims.has(i.id)).length,
      claimed: claimed.length,
      draining: insts.filter((i) => i.state === 'draining').length,
      failed: insts.filter((i) => i.state === 'failed').length,
      typicalBootMs: typical.bootMs,
      typicalStages: typical,
      boots: starting.map((i) => ({
        instance: i.id,
        host: i.host,
        state: i.state,
        elapsedMs: now - i.createdAt,
        progress: typical.startMs ? Math.min(0.99, (now - i.createdAt) / typical.startMs) : null,
      })),
      failures: insts.filter((i) => i.state === 'failed').map((i) => ({ instance: i.id, host: i.host, reason: i.reason ?? '' })),
      unplaceable: unplaceable(spec, pool.size, hostRecords),
      ...serviceImageStatus(spec, insts, hostRecords),
    });
  }
  // Per host in one pass over the instances (a scan per host was hosts x instances: at 500
  // hosts and 20,000 instances, most of a router's CPU through its 5 s pool history tick).
  const perHost = new Map<string, { instances: number; gpusUsed: number }>();
  for (const { value: i } of cache.instances.values()) {
    let h = perHost.get(i.host);
    if (!h) perHost.set(i.host, (h = { instances: 0, gpusUsed: 0 }));
    h.instances++;
    if (i.state !== 'failed') h.gpusUsed += i.gpus?.length ?? 0;
  }
  const hosts: HostStatus[] = [...cache.hosts.values()].map(({ value: h }) => ({
    id: h.id,
    address: h.address,
    draining: h.draining || cache.drains.has(h.id),
    instances: perHost.get(h.id)?.instances ?? 0,
    capacity: h.capacity.instances,
    gpus: { total: h.capacity.gpus ?? 0, used: perHost.get(h.id)?.gpusUsed ?? 0 },
  }));
  const gpuInstances = [...cache.instances.values()].map((v) => v.value).filter((i) => i.gpus?.length && i.state !== 'failed')
    .map((i) => ({ instance: i.id, service: i.service, host: i.host, gpus: i.gpus! }));
  const drainedUnregistered = [...cache.drains].filter((id) => !cache.hosts.has(id)).sort();
  return { hosts, gpuInstances, services, sessions: cache.sessions.size, drainedUnregistered };
}

function pick<T extends Pick<RegistryCache, 'services' | 'hosts' | 'instances' | 'claims' | 'drains'>>(c: T) {
  return { services: c.services, hosts: c.hosts, instances: c.instances, claims: c.claims, drains: c.drains };
}
