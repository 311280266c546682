// A private image registry for a test: Debian's docker-registry (CNCF distribution 2.8) on a
// free 127.0.0.1 port, with htpasswd auth and a fresh storage directory, started like etcd
// and Consul. Images are pushed to it through the machine's engine; the pushed tags are
// removed from that engine again, so nothing but the registry's storage holds them.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { killOnExit } from './children.js';
import { eventually } from './eventually.js';
import { freePort } from './ports.js';

const exec = promisify(execFile);

export interface ImageRegistry {
  /** host:port, the registry part of image references (127.0.0.1:PORT). */
  host: string;
  port: number;
  user: string;
  password: string;
  /**
   * Writes a Docker config file (`auths`, as `docker login` writes it) into `dir` and returns
   * its path; `entries` maps a registry host to user:password (default: this registry, right
   * credentials).
   */
  dockerConfig(dir: string, entries?: Record<string, { user: string; password: string }>): string;
  /** Pushes a local image as `repo:tag` here; resolves with the full reference. */
  push(localImage: string, repoTag: string): Promise<string>;
  /** Stops the registry process (storage kept): pulls then fail with "connection refused". */
  stopServer(): Promise<void>;
  /** Stops it and removes its files. Idempotent. */
  close(): Promise<void>;
}

export async function startImageRegistry(): Promise<ImageRegistry> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const user = 'warmpool';
  const password = randomBytes(12).toString('hex');
  const htpasswd = (await exec('htpasswd', ['-Bbn', user, password])).stdout;
  writeFileSync(path.join(dir, 'htpasswd'), htpasswd);
  writeFileSync(path.join(dir, 'config.yml'), [
    'version: 0.1',
    'log: { level: warn, accesslog: { disabled: true } }',
    `storage: { filesystem: { rootdirectory: ${path.join(dir, 'data')} }, delete: { enabled: true } }`,
    `http: { addr: "${host}", secret: ${randomBytes(8).toString('hex')} }`,
    `auth: { htpasswd: { realm: warmpool-test, path: ${path.join(dir, 'htpasswd')} } }`,
    '',
  ].join('\n'));
  let output = '';
  const proc: ChildProcess = killOnExit(spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const keep = (d: Buffer): void => { if (output.length < 20_000) output += d.toString(); };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);

  const stopServer = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => { proc.once('exit', () => resolve()); proc.kill('SIGKILL'); });
  };
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await stopServer();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(async () => {
      if (proc.exitCode !== null) throw new Error(`docker-registry exited: ${output.slice(-2000)}`);
      const res = await fetch(`http://${host}/v2/`);
      if (res.status !== 401) throw new Error(`/v2/ answered ${res.status}, want 401 (auth on)`);
      return true;
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'docker-registry answering' });
  } catch (err) {
    await close();
    throw err;
  }

  const dockerConfig = (target: string, entries: Record<string, { user: string; password: string }> = { [host]: { user, password } }): string => {
    const auths = Object.fromEntries(Object.entries(entries).map(([h, c]) => [h, { auth: Buffer.from(`${c.user}:${c.password}`).toString('base64') }]));
    const file = path.join(target, 'config.json');
    writeFileSync(file, JSON.stringify({ auths }), { mode: 0o600 });
    return file;
  };

  const push = async (localImage: string, repoTag: string): Promise<string> => {
    const ref = `${host}/${repoTag}`;
    const cfgDir = mkdtempSync(path.join(tmpdir(), 'wp-registry-login-'));
    const env = { ...process.env, DOCKER_CONFIG: cfgDir };
    try {
      dockerConfig(cfgDir);
      await exec('docker', ['tag', localImage, ref]);
      await exec('docker', ['push', ref], { env, maxBuffer: 16 * 1024 * 1024 });
    } finally {
      await exec('docker', ['rmi', ref]).catch(() => undefined);
      rmSync(cfgDir, { recursive: true, force: true });
    }
    return ref;
  };

  return { host, port, user, password, dockerConfig, push, stopServer, close };
}
