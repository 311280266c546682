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

export async function listContainersByLabel(label: string, value?: string): Promise<string[]> {
  const filter = value === undefined ? label : `${label}=${value}`;
  const { stdout } = await exec('docker', ['ps', '-aq', '--filter', `label=${filter}`]);
  return stdout.split('\n').filter(Boolean);
}
