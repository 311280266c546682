import type { ServiceStatus, Status } from '@warmpool/registry';
import { formatDuration } from './durations.js';

export { computeStatus, type Status, type ServiceStatus, type HostStatus } from '@warmpool/registry';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const pct = (x: number | null): string => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);

/** One service's pool: its size and why, the measured rate and boot time, the next change, its cost. */
export function renderPool(v: ServiceStatus): string {
  const p = v.pool;
  const lines: string[] = [];
  // Capped, the slots are fewer than pool + waiting: no "=" then.
  const slots = p.slots < p.size + p.waiting
    ? `${p.slots} slots, not ${p.size} pool + ${p.waiting} waiting: capped (the fleet has room for ${p.room} more)`
    : `${p.slots} slots = ${p.size} pool + ${p.waiting} waiting`;
  if (p.static) {
    lines.push(`${v.name}: static warm ${p.size}; ${slots}`);
  } else {
    const z = p.sizing!;
    lines.push(`${v.name}: target ${p.size}; ${slots}`);
    lines.push(`  why: ${z.reason}`);
    lines.push(`  measured: ${(z.ratePerSec * 60).toFixed(2)} requests/min, boot ${secs(z.bootMs)}${z.bootMeasured ? '' : ' (none measured yet: the policy\'s bootSec, else 30 s)'}; minimum now ${z.floor}`);
    lines.push(`  next: ${z.next ? `${z.next.size} at ${new Date(z.next.at).toISOString()} if no session arrives` : 'no change expected'}`);
  }
  const c = v.cost;
  lines.push(`  cost: hit ratio ${pct(c.hitRatio)} of ${c.sessions} sessions; ${c.waits.count} waited (p50 ${c.waits.p50Ms === null ? '-' : secs(c.waits.p50Ms)}, p95 ${c.waits.p95Ms === null ? '-' : secs(c.waits.p95Ms)}); now ${c.now.idle} idle, ${c.now.busy} busy${c.now.idleGpus || c.now.busyGpus ? ` (${c.now.idleGpus} idle GPUs, ${c.now.busyGpus} busy)` : ''}`);
  return lines.join('\n');
}

/**
 * The `warmpool status` text. `where` names what was looked at (registry and prefix), so an
 * empty fleet says where it is empty instead of only "run apply".
 */
export function renderStatus(s: Status, where: { registry?: string; prefix?: string } = {}): string {
  const at = [where.prefix && `prefix ${where.prefix}`, where.registry].filter(Boolean).join(' in ');
  const out: string[] = [];
  out.push('HOSTS');
  out.push(s.hosts.length
    ? table([['HOST', 'ADDRESS', 'INSTANCES', 'GPUS USED/FREE', 'STATE'], ...s.hosts.map((h) => [
      h.id, h.address, `${h.instances}/${h.capacity}`, h.gpus.total ? `${h.gpus.used}/${h.gpus.total - h.gpus.used}` : '-', h.draining ? 'draining' : 'active',
    ])])
    : '(none)');
  if (s.drainedUnregistered.length) {
    out.push(`drained, not registered by any agent: ${s.drainedUnregistered.join(', ')} (each takes no instance when its agent joins; warmpool drain HOST --undo lifts it)`);
  }
  out.push('', 'SERVICES');
  out.push(s.services.length
    ? table([
      ['SERVICE', 'TARGET', 'WAITING', 'READY', 'BOOTING', 'CLAIMED', 'FAILED', 'TYPICAL BOOT', 'PULLING', 'IMAGE ON'],
      ...s.services.map((v) => [
        v.name, String(v.target), String(v.waiting), String(v.ready), String(v.booting), String(v.claimed), String(v.failed),
        v.typicalBootMs === null ? '-' : `${(v.typicalBootMs / 1000).toFixed(1)}s`, String(v.pulling ?? 0),
        v.imageHosts ? `${v.imagePresentOn}/${v.imageHosts.length} hosts` : '-',
      ]),
    ])
    : `(none${at ? ` under ${at}` : ''}: run warmpool apply -f services.yaml, or name your fleet's registry with --etcd / --prefix)`);
  if (s.services.length) {
    out.push('', 'POOLS');
    out.push(s.services.map(renderPool).join('\n'));
  }
  const timed = s.services.filter((v) => v.typicalStages.startMs !== null);
  if (timed.length) {
    const secs = (ms: number | null): string => (ms === null ? '-' : ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : formatDuration(ms));
    out.push('', 'STAGES (median per instance)');
    out.push(table([['SERVICE', 'PULL', 'CREATE', 'BOOT', 'WARM-UP', 'TO READY'], ...timed.map((v) => {
      const st = v.typicalStages;
      return [v.name, secs(st.pullMs), secs(st.createMs), secs(st.bootMs), secs(st.warmupMs), secs(st.startMs)];
    })]));
  }
  const boots = s.services.flatMap((v) => v.boots.map((b) => ({ ...b, service: v.name })));
  if (boots.length) {
    out.push('', 'BOOTING');
    out.push(table([['SERVICE', 'INSTANCE', 'HOST', 'STATE', 'ELAPSED', 'PROGRESS'], ...boots.map((b) => [b.service, b.instance, b.host, b.state, b.elapsedMs < 60_000 ? `${(b.elapsedMs / 1000).toFixed(1)}s` : formatDuration(b.elapsedMs), b.progress === null ? '?' : `${Math.round(b.progress * 100)}%`])]));
  }
  if (s.gpuInstances.length) {
    out.push('', 'GPUS');
    out.push(table([['INSTANCE', 'SERVICE', 'HOST', 'GPUS'], ...s.gpuInstances.map((g) => [g.instance, g.service, g.host, g.gpus.join(',')])]));
  }
  const stuck = s.services.filter((v) => v.unplaceable);
  if (stuck.length) {
    out.push('', 'NOT PLACEABLE');
    out.push(table([['SERVICE', 'WHY'], ...stuck.map((v) => [v.name, v.unplaceable!])]));
  }
  const failures = s.services.flatMap((v) => v.failures.map((f) => ({ ...f, service: v.name })));
  if (failures.length) {
    out.push('', 'FAILED');
    out.push(table([['SERVICE', 'INSTANCE', 'HOST', 'REASON'], ...failures.map((f) => [f.service, f.instance, f.host, f.reason])]));
  }
  out.push(...renderImages(s));
  out.push('', `SESSIONS ${s.sessions}`);
  return out.join('\n');
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

/** PULLING (instances waiting for their image), IMAGES (which hosts have each service's image; a failed pull with its reason). */
function renderImages(s: Status): string[] {
  const out: string[] = [];
  const pulls = s.services.flatMap((v) => (v.pulls ?? []).map((p) => ({ ...p, service: v.name })));
  if (pulls.length) {
    out.push('', 'PULLING');
    out.push(table([['SERVICE', 'INSTANCE', 'HOST', 'PROGRESS', 'BYTES'], ...pulls.map((p) => [
      p.service, p.instance, p.host, p.percent === null ? '?' : `${p.percent}%`, `${mb(p.bytesDone)} / ${p.bytesTotal === null ? '?' : mb(p.bytesTotal)}`,
    ])]));
  }
  const rows = s.services.flatMap((v) => (v.imageHosts ?? []).map((h) => [
    v.name, v.image ?? '-', h.host,
    h.state === 'pulling' ? `pulling ${h.percent === null ? '' : `${h.percent}%`}`.trim() : h.state === 'failed' ? `failed: ${h.reason ?? ''}` : h.state,
  ]));
  if (rows.length) out.push('', 'IMAGES', table([['SERVICE', 'IMAGE', 'HOST', 'STATE'], ...rows]));
  return out;
}
