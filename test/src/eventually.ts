/** Polls `fn` until it returns without throwing (and not `false`), or the timeout passes. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<Exclude<T, false>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== false) return v as Exclude<T, false>;
      lastErr = new Error('condition returned false');
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const msg = `eventually(${opts.what ?? 'condition'}) timed out after ${timeoutMs} ms`;
      throw new Error(msg, { cause: lastErr });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
