import { execFile } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './infra.js';

const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

/** Runs the `warmpool` CLI with extra environment; never rejects (exit code in `code`). */
export function warmpool(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}
