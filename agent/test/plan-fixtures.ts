/** Plain-object inputs for the planner's unit tests. */
import type { ServiceSpec } from '@warmpool/registry';
import type { Action, LocalInstance, PlanInput, ServiceTarget } from '../src/plan.js';

export const NOW = 1_000_000;

export function spec(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name: 'chat', image: 'img', containerPort: 8000, warm: 3, maxPerHost: 10, bootTimeoutSec: 60,
    readiness: { path: '/health', expectStatus: 200, intervalMs: 1000, failureThreshold: 3 },
    session: { idleTimeoutSec: 60, maxLifetimeSec: 3600 }, env: {}, resources: { memoryMb: 100, cpus: 0 },
    ...over,
  };
}

export function inst(id: string, over: Partial<LocalInstance> = {}): LocalInstance {
  return {
    id, service: 'chat', phase: 'ready', slot: 0, slotSeen: true, specHash: 'h1', memoryMb: 100,
    createdAt: NOW - 10_000, startedAt: NOW - 10_000, launchedAt: NOW - 9_000, readyAt: NOW - 5_000, bootMs: 5_000, ...over,
  };
}

export interface Fleet {
  slots?: Record<string, Record<number, string>>;
  claims?: Record<string, string>;
  endedClaims?: string[];
  sessionExpiry?: Record<string, number>;
  tombstones?: string[];
  hosts?: { id: string; accepting?: boolean; perService?: Record<string, number>; labels?: Record<string, string>; freeGpus?: number }[];
  readyUnclaimed?: Record<string, number>;
}

export function input(o: {
  local?: LocalInstance[]; services?: ServiceSpec[]; fleet?: Fleet; draining?: boolean; busy?: string[]; starting?: string[];
  backoff?: Record<string, number>; capacity?: { instances: number; memoryMb: number }; containers?: PlanInput['containers']; hostId?: string;
  gpuInventory?: string[]; hostLabels?: Record<string, string>; startingGpus?: Record<string, string[]>;
  /** service -> its pool now (slots, static, waiting); absent: the static warm number. */
  pools?: Record<string, NonNullable<ServiceTarget['pool']>>;
} = {}): PlanInput {
  const services = new Map<string, ServiceTarget>((o.services ?? [spec()]).map((s) => [s.name, {
    spec: s, hash: 'h1', ...(o.pools?.[s.name] ? { pool: o.pools[s.name] } : {}),
  }]));
  const f = o.fleet ?? {};
  const slots = new Map(Object.entries(f.slots ?? {}).map(([svc, m]) => [svc, new Map(Object.entries(m).map(([n, id]) => [Number(n), id]))]));
  return {
    now: NOW, hostId: o.hostId ?? 'h1', capacity: o.capacity ?? { instances: 10, memoryMb: 0 }, draining: o.draining ?? false,
    services,
    fleet: {
      slots, claims: new Map(Object.entries(f.claims ?? {})), endedClaims: new Set(f.endedClaims ?? []), sessionExpiry: new Map(Object.entries(f.sessionExpiry ?? {})),
      tombstones: new Set(f.tombstones ?? []),
      hosts: (f.hosts ?? []).map((h) => ({
        id: h.id, accepting: h.accepting ?? true, perService: new Map(Object.entries(h.perService ?? {})),
        ...(h.labels ? { labels: h.labels } : {}), ...(h.freeGpus !== undefined ? { freeGpus: h.freeGpus } : {}),
      })),
      readyUnclaimed: new Map(Object.entries(f.readyUnclaimed ?? {})),
    },
    local: new Map((o.local ?? []).map((i) => [i.id, i])), busy: new Set(o.busy ?? []), starting: new Set(o.starting ?? []),
    backoffUntil: new Map(Object.entries(o.backoff ?? {})), containers: o.containers,
    timing: { spreadStepMs: 50, maxSpreadMs: 1000, strayGraceMs: 30_000 },
    ...(o.gpuInventory ? { gpuInventory: o.gpuInventory } : {}),
    ...(o.hostLabels ? { hostLabels: o.hostLabels } : {}),
    ...(o.startingGpus ? { startingGpus: new Map(Object.entries(o.startingGpus)) } : {}),
  };
}

export const types = (actions: Action[]): string[] => actions.map((a) => a.type);
export const starts = (actions: Action[]) => actions.filter((a): a is Extract<Action, { type: 'start' }> => a.type === 'start');

