/**
 * Durations the way people read them: `45s`, `3m05s`, `7h59m`, `2d03h`. Input in
 * milliseconds; negative values print as `-` prefixed (e.g. an expiry already passed).
 * Precision: whole seconds under an hour, whole minutes under a day, whole hours beyond
 * (truncated, so "7h59m" never overstates the time left).
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (ms < 0) return `-${formatDuration(-ms)}`;
  const s = Math.floor(ms / 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`;
}
