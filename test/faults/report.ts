import type { ScenarioResult } from './harness.js';

/** Why a scenario fails the suite (empty: it passed). */
export function verdict(r: ScenarioResult): string[] {
  const problems: string[] = [];
  if (r.error) problems.push(`error: ${r.error}`);
  if (r.doubleAssigned > 0) problems.push(`${r.doubleAssigned} instance(s) held by two sessions`);
  if (r.orphans !== 0) problems.push(r.orphans < 0 ? 'orphans not checked' : `${r.orphans} orphan(s)`);
  if (r.reused > 0) problems.push(`${r.reused} instance(s) reused by a second session`);
  if (!r.error && r.recoverySec === null) problems.push('the pool did not recover (warm slots filled and a new session served) within the timeout');
  return problems;
}

export function table(results: ScenarioResult[]): string {
  const head = ['SCENARIO', 'METHOD', 'SERVED', 'FAILED', 'FAILURES', 'DOUBLE', 'ORPHANS', 'RECOVERY', 'READY', 'VERDICT'];
  const rows = results.map((r) => [
    r.scenario, r.method, String(r.served), String(r.failed),
    Object.entries(r.failures).map(([k, v]) => `${k}:${v}`).join(' ') || '-',
    String(r.doubleAssigned), String(r.orphans), r.recoverySec === null ? 'none' : `${r.recoverySec.toFixed(1)}s`,
    r.readySec === null ? 'none' : `${r.readySec.toFixed(1)}s`,
    verdict(r).length ? 'FAIL' : 'ok',
  ]);
  const all = [head, ...rows];
  const widths = head.map((_, c) => Math.max(...all.map((row) => row[c]!.length)));
  return all.map((row) => row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}
