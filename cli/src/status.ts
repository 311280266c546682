import type { RegistryCache } from '@warmpool/registry';

export interface ServiceStatus {
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

/** The fleet at a glance, computed from a cache snapshot (pure: tested without a store). */
export function computeStatus(cache: Pick<RegistryCache, 'services' | 'hosts' | 'instances' | 'claims' | 'sessions' | 'drains'>, now: number): Status {
  const services: ServiceStatus[] = [];
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

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

export function renderStatus(s: Status): string {
  const out: string[] = [];
  out.push('HOSTS');
  out.push(s.hosts.length ? table([['HOST', 'ADDRESS', 'INSTANCES', 'STATE'], ...s.hosts.map((h) => [h.id, h.address, `${h.instances}/${h.capacity}`, h.draining ? 'draining' : 'active'])]) : '(none)');
  out.push('', 'SERVICES');
  out.push(s.services.length
    ? table([['SERVICE', 'TARGET', 'READY', 'BOOTING', 'CLAIMED', 'FAILED', 'TYPICAL BOOT'], ...s.services.map((v) => [v.name, String(v.target), String(v.ready), String(v.booting), String(v.claimed), String(v.failed), v.typicalBootMs === null ? '-' : `${(v.typicalBootMs / 1000).toFixed(1)}s`])])
    : '(none: run warmpool apply -f services.yaml)');
  const boots = s.services.flatMap((v) => v.boots.map((b) => ({ ...b, service: v.name })));
  if (boots.length) {
    out.push('', 'BOOTING');
    out.push(table([['SERVICE', 'INSTANCE', 'HOST', 'ELAPSED', 'PROGRESS'], ...boots.map((b) => [b.service, b.instance, b.host, `${(b.elapsedMs / 1000).toFixed(1)}s`, b.progress === null ? '?' : `${Math.round(b.progress * 100)}%`])]));
  }
  out.push('', `SESSIONS ${s.sessions}`);
  return out.join('\n');
}
