import type { ServiceSpec } from '@warmpool/registry';
import type { PullBytes } from './docker.js';
import type { Clock } from './clock.js';
import { percentOf, pullSettings, type ImagePuller } from './image-puller.js';
import type { Logger } from './logger.js';
import type { LocalInstance } from './plan.js';

/**
 * An instance waits for its image before any container exists: `pulling`, with the bytes
 * in its record (written at most every `progressMs`), then back to `creating`. The boot
 * clock starts later, at the app container's start. A failed pull marks the instance dead
 * with the registry's reason, charged to the image's backoff (never the service's).
 * `abandoned` resolves (with the reason) when the instance is not wanted any more (its
 * service removed or changed): it stops waiting at once, the pull goes on for whoever
 * else waits. Resolves false when the instance must go; rejects when the engine is unreachable.
 */
export async function waitForImage(
  ctx: { images: ImagePuller; clock: Clock; log: Logger; timing: { pullProgressMs: number } },
  inst: LocalInstance, spec: ServiceSpec, write: (inst: LocalInstance) => Promise<void>, abandoned: Promise<string>,
): Promise<boolean> {
  const { policy, timeoutMs } = pullSettings(spec);
  const t0 = ctx.clock.now();
  let lastWrite = 0;
  let cancelTrailing: (() => void) | undefined;
  const flush = (): void => {
    cancelTrailing = undefined;
    if (inst.phase !== 'pulling') return;
    lastWrite = ctx.clock.now();
    void write(inst).catch(() => undefined);
  };
  const onWait = (b: PullBytes): void => {
    inst.pull = { image: spec.image, bytesDone: b.done, bytesTotal: b.total, percent: percentOf(b) };
    if (inst.phase === 'creating') {
      inst.phase = 'pulling';
      ctx.log.info({ instance: inst.id, service: inst.service, image: spec.image }, 'instance waiting for its image');
      return flush();
    }
    // At most one write per interval, the latest bytes included (a trailing write).
    cancelTrailing ??= ctx.clock.setTimeout(flush, Math.max(0, lastWrite + ctx.timing.pullProgressMs - ctx.clock.now()));
  };
  const pulled = ctx.images.ensure(spec.image, policy, timeoutMs, onWait).finally(() => cancelTrailing?.());
  const r = await Promise.race([pulled, abandoned.then((reason) => ({ abandoned: reason }))]);
  if ('abandoned' in r) {
    pulled.catch(() => undefined);
    cancelTrailing?.();
    ctx.images.leave(spec.image, onWait);
    inst.pull = null;
    if (inst.phase === 'pulling') inst.phase = 'creating';
    inst.dead = `${r.abandoned} while pulling its image`;
    inst.deadIsFailure = false;
    return false;
  }
  const waited = inst.phase === 'pulling';
  inst.pull = null;
  if (waited) inst.phase = 'creating';
  if (!r.ok) {
    inst.stages = { ...inst.stages, pullMs: null };
    inst.dead = r.reason;
    inst.deadIsFailure = true;
    inst.pullFailed = true;
    // Shown in the failed record; charged once, to the image (see ImagePuller).
    inst.failureWhy = `${r.reason}; failed pull ${r.failures} in a row for this image, next attempt in ${(r.retryInMs / 1000).toFixed(1)} s`;
    return false;
  }
  inst.stages = { ...inst.stages, pullMs: waited ? ctx.clock.now() - t0 : 0 };
  return true;
}
