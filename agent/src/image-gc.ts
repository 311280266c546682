import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from './clock.js';
import type { ContainerRuntime } from './docker.js';
import type { Logger } from './logger.js';

/**
 * Image garbage collection (docs/images.md). Only images this agent pulled are ever
 * removed, and only once no applied service has named them for `afterMs`; an image that
 * any container on the engine was created from (running or stopped, ours or not) is kept,
 * and the removal is never forced, so the engine itself refuses to remove an image in use.
 * What the agent pulled, and when a service last named it, is kept in RUN_DIR/images.json so
 * that a restarted agent still knows.
 */
export class ImageGc {
  private readonly file: string;
  private pulled: Record<string, { pulledAt: number; lastWantedAt: number }> = {};

  constructor(private readonly opts: { runtime: ContainerRuntime; clock: Clock; log: Logger; runDir: string; afterMs: number }) {
    this.file = path.join(opts.runDir, 'images.json');
    try {
      const data = JSON.parse(readFileSync(this.file, 'utf8')) as unknown;
      if (data && typeof data === 'object' && !Array.isArray(data)) this.pulled = data as typeof this.pulled;
    } catch {
      // First start (or an unreadable file): nothing pulled by us is known.
    }
  }

  /** The agent pulled `image` (it becomes a candidate for removal once unused). */
  notePulled(image: string): void {
    const now = this.opts.clock.now();
    this.pulled[image] = { pulledAt: now, lastWantedAt: now };
    this.save();
  }

  /** Images this agent pulled and still tracks (for status and tests). */
  tracked(): string[] {
    return Object.keys(this.pulled);
  }

  /** Removes the pulled images no service has named for `afterMs` and no container uses. */
  async sweep(wanted: ReadonlySet<string>): Promise<string[]> {
    if (this.opts.afterMs <= 0) return [];
    const now = this.opts.clock.now();
    let changed = false;
    const due: string[] = [];
    for (const [image, e] of Object.entries(this.pulled)) {
      if (wanted.has(image)) { e.lastWantedAt = now; changed = true; } else if (now - e.lastWantedAt >= this.opts.afterMs) due.push(image);
    }
    const removed: string[] = [];
    if (due.length) {
      const images = await this.opts.runtime.listImages();
      for (const image of due) {
        const held = images.find((i) => i.tags.includes(image) || i.tags.includes(`${image}:latest`));
        if (!held) { delete this.pulled[image]; changed = true; continue; } // already gone
        if (held.containers.length) continue; // a container uses it: never removed
        try {
          await this.opts.runtime.removeImage(image);
          this.opts.log.info({ image, unusedForMs: now - this.pulled[image]!.lastWantedAt }, 'removed an image no service uses');
          delete this.pulled[image];
          changed = true;
          removed.push(image);
        } catch (err) {
          this.opts.log.warn({ err, image }, 'could not remove an unused image; will try again');
        }
      }
    }
    if (changed) this.save();
    return removed;
  }

  private save(): void {
    try {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(this.pulled));
      renameSync(tmp, this.file);
    } catch (err) {
      this.opts.log.warn({ err }, 'could not save the list of pulled images');
    }
  }
}
