import type { RegistryCache } from './cache.js';
import { serviceImageStatus, type ServiceImageStatus } from './image-status.js';

export interface ServiceStatus extends ServiceImageStatus {
  name: string;
  target: number;
  booting: number;
  ready: number;
  claimed: number;
  draining: number;
  failed: number;
  /** Typical boot time from ready instances (median bootMs), if any. */
  typicalBootMs: number | null;
  boots: { instance: string; host: string; elapsedMs: number; progress: number | null }[];
}

export interface HostStatus {
  id: string;
  address: string;
  draining: boolean;
  instances: number;
  capacity: number;
}

export interface Status {
  hosts: HostStatus[];
  services: ServiceStatus[];
  sessions: number;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The fleet at a glance, computed from a cache snapshot (pure: tested without a store). Used by `warmpool status` and the dashboard. */
export function computeStatus(cache: Pick<RegistryCache, 'services' | 'hosts' | 'instances' | 'claims' | 'sessions' | 'drains'>, now: number): Status {
  const services: ServiceStatus[] = [];
  const hostRecords = [...cache.hosts.values()].map((v) => v.value);
  for (const [name, { value: spec }] of cache.services) {
    const insts = [...cache.instances.values()].map((v) => v.value).filter((i) => i.service === name);
    const claimed = insts.filter((i) => cache.claims.has(i.id) || i.state === 'claimed');
    const typical = median(insts.map((i) => i.bootMs).filter((b): b is number => typeof b === 'number'));
    const booting = insts.filter((i) => i.state === 'booting');
    services.push({
      name,
      target: spec.warm,
      booting: booting.length,
      ready: insts.filter((i) => i.state === 'ready' && !cache.claims.has(i.id)).length,
      claimed: claimed.length,
      draining: insts.filter((i) => i.state === 'draining').length,
      failed: insts.filter((i) => i.state === 'failed').length,
      typicalBootMs: typical,
      boots: booting.map((i) => ({
        instance: i.id,
        host: i.host,
        elapsedMs: now - i.createdAt,
        progress: typical ? Math.min(0.99, (now - i.createdAt) / typical) : null,
      })),
      ...serviceImageStatus(spec, insts, hostRecords),
    });
  }
  const hosts: HostStatus[] = [...cache.hosts.values()].map(({ value: h }) => ({
    id: h.id,
    address: h.address,
    draining: h.draining || cache.drains.has(h.id),
    instances: [...cache.instances.values()].filter((v) => v.value.host === h.id).length,
    capacity: h.capacity.instances,
  }));
  return { hosts, services, sessions: cache.sessions.size };
}
