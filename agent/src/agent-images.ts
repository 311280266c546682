import { ServiceBackoff } from './backoff.js';
import type { Clock } from './clock.js';
import type { ContainerRuntime } from './docker.js';
import { ImageGc } from './image-gc.js';
import { ImagePuller } from './image-puller.js';
import type { Logger } from './logger.js';
import { dockerConfigAuth } from './registry-auth.js';

/**
 * The agent's image parts (docs/images.md): the puller with its per-image backoff (the same
 * timings as the services' crash backoff, kept apart from it), credentials from the Docker
 * config file of the agent's own config, and the garbage collector of pulled images.
 */
export function createImageParts(o: {
  runtime: ContainerRuntime; clock: Clock; log: Logger; random: () => number; runDir: string; dockerConfigPath: string | undefined;
  timing: { backoffBaseMs: number; backoffMaxMs: number; imageGcAfterMs: number }; onChange: () => void;
}): { images: ImagePuller; imageBackoff: ServiceBackoff; imageGc: ImageGc } {
  const imageBackoff = new ServiceBackoff({
    baseMs: o.timing.backoffBaseMs, maxMs: o.timing.backoffMaxMs, resetAfterMs: o.timing.backoffMaxMs * 2, now: o.clock.now, random: o.random,
  });
  const imageGc = new ImageGc({ runtime: o.runtime, clock: o.clock, log: o.log, runDir: o.runDir, afterMs: o.timing.imageGcAfterMs });
  const images = new ImagePuller({
    runtime: o.runtime, clock: o.clock, log: o.log, backoff: imageBackoff, onChange: o.onChange,
    auth: dockerConfigAuth(o.dockerConfigPath, (message) => o.log.warn(message)),
    onPulled: (image) => imageGc.notePulled(image),
  });
  return { images, imageBackoff, imageGc };
}
