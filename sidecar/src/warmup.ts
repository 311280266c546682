import http from 'node:http';
import type { WarmupStep } from './config.js';
import type { WarmupFn } from './prober.js';

/** One warm-up request; resolves undefined when it passed, else why it failed. */
export function sendWarmup(host: string, port: number, step: WarmupStep): Promise<string | undefined> {
  const what = `${step.method} ${step.path}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (why: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(why);
    };
    const body = step.body ?? '';
    const headers: Record<string, string | number> = { 'user-agent': 'warmpool-sidecar', ...step.headers };
    if (step.body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host, port, method: step.method, path: step.path, agent: false, headers }, (res) => {
      // The whole answer counts: a model that loads on the first request answers slowly, not late.
      res.resume();
      res.on('end', () => done(res.statusCode === step.expectStatus ? undefined : `${what} answered ${res.statusCode}, expected ${step.expectStatus}`));
      res.on('error', (err) => done(`${what} broke off: ${err.message}`));
    });
    // One deadline for the whole exchange (headers and body), not an idle timeout.
    const timer = setTimeout(() => { done(`${what} gave no full answer within ${step.timeoutMs / 1000} s`); req.destroy(); }, step.timeoutMs);
    req.on('error', (err) => done(`${what} failed: ${(err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'connection refused' : err.message}`));
    req.end(body);
  });
}

/** The warm-up requests in order; the first failure stops the sequence and names its step. */
export function warmupSequence(host: string, port: number, steps: readonly WarmupStep[]): WarmupFn {
  return async () => {
    for (const [i, step] of steps.entries()) {
      const why = await sendWarmup(host, port, step);
      if (why) return `warm-up ${i + 1} of ${steps.length} failed: ${why}`;
    }
    return undefined;
  };
}
