import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

const exec = promisify(execFile);

/** A label value unique to one test run, so parallel runs never clean up each other's containers. */
export function testRunId(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** Removes every container carrying `label=value` (force). Returns how many were removed. */
export async function removeContainersByLabel(label: string, value?: string): Promise<number> {
  const filter = value === undefined ? label : `${label}=${value}`;
  const { stdout } = await exec('docker', ['ps', '-aq', '--filter', `label=${filter}`]);
  const ids = stdout.split('\n').filter(Boolean);
  if (ids.length) await exec('docker', ['rm', '-f', '-v', ...ids]).catch(() => undefined);
  return ids.length;
}

/**
 * Removes the containers with the label until none has appeared for `quietMs`, within
 * `timeoutMs`: a process killed while its create request was in flight leaves the engine to
 * finish that create after a single removal ran. Returns how many were removed in all.
 */
export async function removeContainersUntilGone(label: string, value?: string, opts: { quietMs?: number; timeoutMs?: number } = {}): Promise<number> {
  const quietMs = opts.quietMs ?? 1_500;
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let removed = 0;
  let quietSince = Date.now();
  for (;;) {
    const n = await removeContainersByLabel(label, value);
    removed += n;
    if (n > 0) quietSince = Date.now();
    else if (Date.now() - quietSince >= quietMs || Date.now() >= deadline) return removed;
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function listContainersByLabel(label: string, value?: string): Promise<string[]> {
  const filter = value === undefined ? label : `${label}=${value}`;
  const { stdout } = await exec('docker', ['ps', '-aq', '--filter', `label=${filter}`]);
  return stdout.split('\n').filter(Boolean);
}
