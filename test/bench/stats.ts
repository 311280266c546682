/** Shared figures for benchmarks: percentiles of latency samples and JSON line output. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samplesMs: number[]): { n: number; p50Ms: number; p99Ms: number; meanMs: number } {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { n: s.length, p50Ms: round(percentile(s, 50)), p99Ms: round(percentile(s, 99)), meanMs: round(mean) };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/**
 * Runs `op` with `concurrency` workers until `total` operations finished; returns per-op
 * latencies (ms) and the achieved rate (ops/s). Bounded by count.
 */
export async function load(op: (i: number) => Promise<void>, total: number, concurrency: number): Promise<{ latencies: number[]; perSec: number; errors: number }> {
  let next = 0;
  let errors = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const s = performance.now();
      try {
        await op(i);
        latencies.push(performance.now() - s);
      } catch {
        errors++;
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  return { latencies, perSec: round(latencies.length / secs, 1), errors };
}
