// A Docker engine of a test's own: its own dockerd (and the containerd it starts), socket,
// data root and bridge, so a test can stop and restart the engine without touching the
// machine's engine or any other test's containers. The images a test needs are copied in
// from the machine's engine (`docker save | docker load`: there is no registry).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { killOnExit } from './children.js';
import { eventually } from './eventually.js';

const exec = promisify(execFile);
const DIR_PREFIX = 'wp-dockerd-';

export interface PrivateDockerd {
  socketPath: string;
  /** Runs the docker CLI against this engine; resolves with stdout. */
  docker(...args: string[]): Promise<string>;
  /** Stops the engine as a host shutdown or `systemctl restart docker` does (SIGTERM; its containers stop). */
  stopEngine(): Promise<void>;
  /** Starts the engine again on the same data root (after stopEngine). */
  startEngine(): Promise<void>;
  /** Removes every container, stops the engine, deletes its bridge and files. Idempotent. */
  close(): Promise<void>;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/**
 * Whether `pid` is still the engine process a leftover pid file named: pids are reused, and
 * a stale file must never make the sweep kill an unrelated process (it SIGKILLed other tests'
 * routers during a full CI run).
 */
function isEngine(pid: number, dir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /(^|\/)(dockerd|containerd)$/.test(cmdline[0] ?? '') && cmdline.some((arg) => arg.includes(dir));
  } catch {
    return false;
  }
}

function pidIn(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes what a test process killed before its teardown left behind: an engine whose test
 * is gone (its directory names the test's pid), its containerd, its bridge.
 */
async function sweepLeftovers(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const owner = Number(name.slice(DIR_PREFIX.length).split('-')[0]);
    if (Number.isInteger(owner) && alive(owner)) continue;
    const dir = path.join(tmpdir(), name);
    for (const pidFile of [path.join(dir, 'docker.pid'), path.join(dir, 'exec', 'containerd', 'containerd.pid')]) {
      const pid = pidIn(pidFile);
      if (pid !== undefined && alive(pid) && isEngine(pid, dir)) process.kill(pid, 'SIGKILL');
    }
    await exec('ip', ['link', 'del', bridgeName(name)]).catch(() => undefined);
    await unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Unmounts (lazily, deepest first) every mount under `dir`: overlay layers an engine left mounted. */
async function unmountUnder(dir: string): Promise<void> {
  let mounts: string[];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${dir}/`));
  } catch {
    return;
  }
  for (const m of mounts.sort((a, b) => b.length - a.length)) await exec('umount', ['-l', m]).catch(() => undefined);
}

/** A Linux interface name (at most 15 characters) derived from the engine's directory. */
function bridgeName(dirName: string): string {
  return `wpbr${dirName.slice(-8).replace(/[^a-zA-Z0-9]/g, '')}`.slice(0, 15);
}

export async function startPrivateDockerd(opts: { images: string[] }): Promise<PrivateDockerd> {
  await sweepLeftovers();
  const dir = mkdtempSync(path.join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  const socketPath = path.join(dir, 'docker.sock');
  const bridge = bridgeName(path.basename(dir));
  // A bridge of its own (the machine's engine owns docker0); published ports go through
  // docker-proxy on 127.0.0.1, so the engine needs no iptables rules of its own. Storage is
  // vfs (plain directories, no mounts on the host): an overlay mount of this engine copied
  // into another process's mount namespace (a browser sandbox, another engine's container
  // starting at that moment) stays busy there, and the engine then cannot remove it.
  const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}`;
  await exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
  await exec('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
  await exec('ip', ['link', 'set', bridge, 'up']);

  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const docker = async (...args: string[]): Promise<string> => (await exec('docker', ['-H', `unix://${socketPath}`, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;

  const startEngine = async (): Promise<void> => {
    const log = openSync(path.join(dir, 'dockerd.log'), 'a');
    proc = killOnExit(spawn('dockerd', [
      '--host', `unix://${socketPath}`, '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'),
      '--pidfile', path.join(dir, 'docker.pid'), '--bridge', bridge, '--storage-driver', 'vfs', '--iptables=false', '--ip-masq=false', '--ip-forward=false',
    ], { stdio: ['ignore', log, log] }));
    const p = proc;
    exited = new Promise((resolve) => p.once('exit', () => resolve()));
    await eventually(async () => {
      if (p.exitCode !== null) throw new Error(`dockerd exited: ${readFileSync(path.join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`);
      await docker('info', '--format', '{{.ServerVersion}}');
      return true;
    }, { timeoutMs: 30_000, intervalMs: 200, what: 'private dockerd answering' });
  };

  const stopEngine = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGTERM');
    // unref: a timer left running would keep the test process alive 40 s after the engine stopped.
    await Promise.race([exited, new Promise((r) => setTimeout(r, 40_000).unref())]);
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await exited;
    }
  };

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const ids = (await docker('ps', '-aq').catch(() => '')).split('\n').filter(Boolean);
      if (ids.length) await docker('rm', '-f', '-v', ...ids).catch(() => undefined);
    }
    await stopEngine();
    const containerd = pidIn(path.join(dir, 'exec', 'containerd', 'containerd.pid'));
    if (containerd !== undefined && alive(containerd) && isEngine(containerd, dir)) process.kill(containerd, 'SIGKILL');
    await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
    await unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await startEngine();
    for (const image of opts.images) {
      // docker save | docker -H private load
      await new Promise<void>((resolve, reject) => {
        const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
        const load = spawn('docker', ['-H', `unix://${socketPath}`, 'load'], { stdio: ['pipe', 'ignore', 'pipe'] });
        let err = '';
        save.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
        load.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
        save.stdout!.pipe(load.stdin!);
        load.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`loading ${image} into the private engine failed: ${err}`))));
      });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { socketPath, docker, stopEngine, startEngine, close };
}
