import type { Status } from '@warmpool/registry';

export { computeStatus, type Status, type ServiceStatus, type HostStatus } from '@warmpool/registry';

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
  const timed = s.services.filter((v) => v.typicalStages.startMs !== null);
  if (timed.length) {
    const secs = (ms: number | null): string => (ms === null ? '-' : `${(ms / 1000).toFixed(1)}s`);
    out.push('', 'STAGES (median per instance)');
    out.push(table([['SERVICE', 'PULL', 'CREATE', 'BOOT', 'WARM-UP', 'TO READY'], ...timed.map((v) => {
      const st = v.typicalStages;
      return [v.name, secs(st.pullMs), secs(st.createMs), secs(st.bootMs), secs(st.warmupMs), secs(st.startMs)];
    })]));
  }
  const boots = s.services.flatMap((v) => v.boots.map((b) => ({ ...b, service: v.name })));
  if (boots.length) {
    out.push('', 'BOOTING');
    out.push(table([['SERVICE', 'INSTANCE', 'HOST', 'STATE', 'ELAPSED', 'PROGRESS'], ...boots.map((b) => [b.service, b.instance, b.host, b.state, `${(b.elapsedMs / 1000).toFixed(1)}s`, b.progress === null ? '?' : `${Math.round(b.progress * 100)}%`])]));
  }
  out.push('', `SESSIONS ${s.sessions}`);
  return out.join('\n');
}
