import os from 'node:os';

const MAX_SLOWNESS = 6;

/**
 * How much slower than an idle machine this one runs right now, as a factor for test
 * deadlines: the 1-minute load average per CPU (os.loadavg()[0] / os.availableParallelism()),
 * at least 1 (a machine busy up to its core count is "idle" for this purpose) and at most
 * 6. `WARMPOOL_TEST_SLOWNESS=N` fixes the factor (e.g. 1 to get the plain deadlines back).
 */
export function slowness(): number {
  const fixed = Number(process.env.WARMPOOL_TEST_SLOWNESS);
  if (Number.isFinite(fixed) && fixed > 0) return fixed;
  const perCpu = os.loadavg()[0]! / Math.max(1, os.availableParallelism());
  return Math.min(MAX_SLOWNESS, Math.max(1, perCpu));
}

/**
 * Polls `fn` until it returns without throwing (and not `false`), or the timeout passes.
 * `timeoutMs` (default 10 s) is the time the awaited work takes on an idle machine: the
 * clock runs slower while the machine is loaded (each interval counts elapsed / slowness()),
 * so a deadline stretches by up to 6x under heavy load instead of failing a test whose
 * work was only starved of CPU. The error says both figures.
 */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<Exclude<T, false>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const started = Date.now();
  let budget = timeoutMs;
  let last = started;
  let maxFactor = 1;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== false) return v as Exclude<T, false>;
      lastErr = new Error('condition returned false');
    } catch (err) {
      lastErr = err;
    }
    const now = Date.now();
    const factor = slowness();
    maxFactor = Math.max(maxFactor, factor);
    budget -= (now - last) / factor;
    last = now;
    if (budget <= 0) {
      const msg = `eventually(${opts.what ?? 'condition'}) timed out after ${timeoutMs} ms of work`
        + ` (${now - started} ms on the clock; machine slowness up to ${maxFactor.toFixed(1)}x)`;
      throw new Error(msg, { cause: lastErr });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
