import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePorts } from './ports.js';
import { eventually } from './eventually.js';
import { killOnExit, removeOnExit } from './children.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | undefined;
}

export interface EtcdCluster {
  /** Client URLs of all members, e.g. ['http://127.0.0.1:23791']. */
  endpoints: string[];
  members: EtcdMember[];
  /** Stop one member (SIGKILL by default) without removing its data. */
  stopMember(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Start a stopped member again on the same ports and data dir. */
  startMember(name: string): Promise<void>;
  /** Name of the current leader, asked of etcdctl. */
  leader(): Promise<string>;
  /** Run etcdctl (API v3) against the cluster; returns stdout. */
  etcdctl(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface EtcdOptions {
  members?: 1 | 3;
  /** Extra flags for every member (TLS, auth...). */
  extraArgs?: (m: EtcdMember) => string[];
  clientScheme?: 'http' | 'https';
  /** etcdctl flags used by the helper itself (certs, user). */
  etcdctlArgs?: string[];
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err}`))));
  });
}

/** Starts a private etcd (1 or 3 members) on free loopback ports with fresh data dirs. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdCluster> {
  const n = opts.members ?? 1;
  const scheme = opts.clientScheme ?? 'http';
  const ports = await freePorts(n * 2);
  const base = mkdtempSync(path.join(tmpdir(), 'warmpool-etcd-'));
  removeOnExit(base); // also when the test fails before its teardown stops this etcd
  const token = path.basename(base);
  const members: EtcdMember[] = [];
  for (let i = 0; i < n; i++) {
    members.push({
      name: `n${i + 1}`,
      clientUrl: `${scheme}://127.0.0.1:${ports[i * 2]}`,
      peerUrl: `http://127.0.0.1:${ports[i * 2 + 1]}`,
      dataDir: path.join(base, `n${i + 1}`),
      proc: undefined,
    });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  let everStarted = new Set<string>();

  const startOne = (m: EtcdMember): void => {
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--initial-cluster-state', everStarted.has(m.name) ? 'existing' : 'new',
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'error',
      ...(opts.extraArgs?.(m) ?? []),
    ];
    everStarted.add(m.name);
    const p = killOnExit(spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    p.stderr?.on('data', () => {});
    m.proc = p;
  };

  const etcdctl = (...args: string[]): Promise<string> =>
    run('etcdctl', ['--endpoints', members.map((m) => m.clientUrl).join(','), ...(opts.etcdctlArgs ?? []), ...args], {
      ETCDCTL_API: '3',
    });

  const waitHealthy = async (ms: EtcdMember[]): Promise<void> => {
    await eventually(
      () => run('etcdctl', ['--endpoints', ms.map((m) => m.clientUrl).join(','), ...(opts.etcdctlArgs ?? []), 'endpoint', 'health'], { ETCDCTL_API: '3' }),
      { timeoutMs: 20_000, intervalMs: 100, what: 'etcd healthy' },
    );
  };

  for (const m of members) startOne(m);
  everStarted = new Set(members.map((m) => m.name));
  await waitHealthy(members);

  const stopProc = async (m: EtcdMember, signal: NodeJS.Signals): Promise<void> => {
    const p = m.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
    m.proc = undefined;
  };

  return {
    endpoints: members.map((m) => m.clientUrl),
    members,
    etcdctl,
    async stopMember(name, signal = 'SIGKILL') {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no member ${name}`);
      await stopProc(m, signal);
    },
    async startMember(name) {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no member ${name}`);
      startOne(m);
      await waitHealthy([m]);
    },
    async leader() {
      return eventually(async () => {
        const out = await etcdctl('endpoint', 'status', '-w', 'json', '--cluster');
        const rows = JSON.parse(out) as { Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }[];
        const row = rows.find((r) => String(r.Status.leader) === String(r.Status.header.member_id));
        if (!row) throw new Error('no leader');
        const m = members.find((x) => x.clientUrl === row.Endpoint);
        if (!m) throw new Error(`unknown leader endpoint ${row.Endpoint}`);
        return m.name;
      }, { timeoutMs: 10_000, what: 'etcd leader' });
    },
    async stop() {
      await Promise.all(members.map((m) => stopProc(m, 'SIGKILL')));
      rmSync(base, { recursive: true, force: true });
    },
  };
}
