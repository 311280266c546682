// A safety net for processes a test starts (etcd, Consul, agents, routers): teardown stops
// them, but a test process that is itself killed (tap's timeout sends SIGTERM) never runs
// its teardown. Tracked children are SIGKILLed, and tracked temporary directories (etcd
// data, Consul, a mesh's run dirs) removed, when this process exits or is told to.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;
let signalsOwned = false;

/**
 * For a program with its own graceful shutdown on SIGINT / SIGTERM (the demo): a signal no
 * longer SIGKILLs the tracked children and exits at once; the program stops them itself,
 * and whatever is left when it exits is still killed.
 */
export function ownSignals(): void {
  signalsOwned = true;
}

function killAll(): void {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
  children.clear();
  for (const d of dirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort at exit */ }
  }
  dirs.clear();
}

/** Tracks `p` until it exits; returns it. */
export function killOnExit<T extends ChildProcess>(p: T): T {
  children.add(p);
  p.once('exit', () => children.delete(p));
  hook();
  return p;
}

/**
 * Removes `dir` (recursively) when this process exits, unless the returned function was
 * called first (the owner removed it itself). For temporary directories of helpers whose
 * test may fail before its teardown was registered.
 */
export function removeOnExit(dir: string): () => void {
  dirs.add(dir);
  hook();
  return () => { dirs.delete(dir); };
}

function hook(): void {
  if (!hooked) {
    hooked = true;
    process.once('exit', killAll);
    for (const [sig, n] of [['SIGTERM', 15], ['SIGINT', 2], ['SIGHUP', 1]] as const) {
      process.once(sig, () => {
        if (signalsOwned) return;
        killAll();
        process.exit(128 + n);
      });
    }
  }
}
