import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const testbedDir = path.join(repoRoot, '.testbed');
export const consulBin = path.join(testbedDir, 'consul', 'usr', 'bin', 'consul');
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

function has(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export type Infra = 'etcd' | 'docker' | 'consul' | 'dig' | 'nginx' | 'registry';

export function infraMissing(what: Infra): string | undefined {
  switch (what) {
    case 'etcd':
      return has('etcd', ['--version']) ? undefined : 'etcd is not installed (run npm run testbed)';
    case 'docker':
      return has('docker', ['info']) ? undefined : 'the Docker engine is not running (run npm run testbed)';
    case 'consul':
      return existsSync(consulBin) ? undefined : `consul not found at ${consulBin} (run npm run testbed)`;
    case 'dig':
      return has('dig', ['-v']) ? undefined : 'dig is not installed (run npm run testbed)';
    case 'nginx':
      return has('nginx', ['-v']) ? undefined : 'nginx is not installed (run npm run testbed)';
    case 'registry':
      return has('docker-registry', ['--version']) && has('sh', ['-c', 'command -v htpasswd'])
        ? undefined : 'docker-registry or htpasswd is not installed (run npm run testbed)';
  }
}

/**
 * For `t.test(name, { skip: infraSkip('etcd') }, fn)`. Outside CI a missing piece skips the
 * test with the reason; in CI (CI=true) missing infrastructure throws: a failure, never a
 * silent skip.
 */
export function infraSkip(...what: Infra[]): false | string {
  for (const w of what) {
    const why = infraMissing(w);
    if (why === undefined) continue;
    if (inCI) throw new Error(`required infrastructure missing in CI: ${why}`);
    return why;
  }
  return false;
}
