import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEtcd, type EtcdCluster, type EtcdMember } from './etcd.js';
import { startConsul, type ConsulAgent } from './consul.js';
import { removeContainersUntilGone } from './docker.js';
import { repoRoot } from './infra.js';
import { killOnExit, removeOnExit } from './children.js';

const warmpoolBin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

export interface MeshProcess {
  name: string;
  proc: ChildProcess | undefined;
  /** Lines the process printed (stdout and stderr), last 2000. */
  output: string[];
}

export interface MeshRouter extends MeshProcess {
  url: string;
  port: number;
}

export interface MeshAgent extends MeshProcess {
  hostId: string;
  address: string;
}

export interface MeshOptions {
  agents?: number;
  routers?: number;
  etcdMembers?: 1 | 3;
  /** Start a Consul dev agent; agents and routers register in it. */
  consul?: boolean;
  /** A services file (the object `warmpool apply -f` reads); applied when given. */
  services?: { services: unknown[] };
  leaseTtlSec?: number;
  /** Ports for the routers (the demo asks for 8080, 8081); 0 = any free port. */
  routerPorts?: number[];
  /** Address each agent advertises and publishes on (default 127.0.0.1). */
  hostAddresses?: string[];
  defaultService?: string;
  agentArgs?: string[];
  /** Extra etcd flags per member (e.g. also listen on a veth address, for an agent in a network namespace). */
  etcdExtraArgs?: (m: EtcdMember) => string[];
  /** Command that agent i runs under, e.g. ['ip', 'netns', 'exec', NS] to put its host in a network namespace. */
  agentCommandPrefix?: (i: number) => string[] | undefined;
  /** etcd endpoints (comma separated) agent i uses instead of the mesh's own. */
  agentEtcdEndpoints?: (i: number) => string | undefined;
  onLine?: (proc: string, line: string) => void;
  /** Registry prefix (default: a random one per mesh; the demo uses the CLI's default). */
  prefix?: string;
  /** Called before each start-up step ("starting etcd...") so a caller can show progress. */
  onStep?: (step: string) => void;
}

export interface Mesh {
  etcd: EtcdCluster;
  consul: ConsulAgent | undefined;
  prefix: string;
  /** Value of the warmpool.cluster label on every container of this mesh. */
  cluster: string;
  agents: MeshAgent[];
  routers: MeshRouter[];
  /** Run the `warmpool` CLI against this mesh's registry. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  startAgent(i: number): Promise<MeshAgent>;
  stopAgent(i: number, signal?: NodeJS.Signals): Promise<void>;
  startRouter(i: number): Promise<MeshRouter>;
  stopRouter(i: number, signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

function pipeLines(p: ChildProcess, into: MeshProcess, onLine?: (proc: string, line: string) => void): void {
  let buf = '';
  const feed = (d: Buffer): void => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      into.output.push(line);
      if (into.output.length > 2000) into.output.shift();
      onLine?.(into.name, line);
    }
  };
  p.stdout?.on('data', feed);
  p.stderr?.on('data', feed);
}

async function stopProc(p: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.once('exit', () => { clearTimeout(timer); resolve(); });
    p.kill(signal);
  });
}

/**
 * A whole local Warmpool mesh from real processes: etcd (1 or 3 members), optionally Consul,
 * N agents (`warmpool agent`, one per simulated host) and M routers (`warmpool router`).
 * Used by the demo, the end-to-end tests and the fault suite. stop() kills every process
 * and removes every container labelled with this mesh's cluster.
 */
export async function startMesh(opts: MeshOptions = {}): Promise<Mesh> {
  const id = randomBytes(4).toString('hex');
  const prefix = opts.prefix ?? `/warmpool-${id}/`;
  const step = opts.onStep ?? ((): void => undefined);
  const cluster = `wp-${id}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-mesh-'));
  removeOnExit(dir);
  step(`starting etcd (${opts.etcdMembers ?? 1} member${(opts.etcdMembers ?? 1) > 1 ? 's' : ''})...`);
  const etcd = await startEtcd({ members: opts.etcdMembers ?? 1, ...(opts.etcdExtraArgs ? { extraArgs: opts.etcdExtraArgs } : {}) });
  let consul: ConsulAgent | undefined;
  const agents: MeshAgent[] = [];
  const routers: MeshRouter[] = [];
  const endpoints = (): string => etcd.endpoints.join(',');

  const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const p = killOnExit(spawn(process.execPath, [warmpoolBin, ...args], { env: { ...process.env, WARMPOOL_ETCD: endpoints(), WARMPOOL_PREFIX: prefix }, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });

  const startAgent = async (i: number): Promise<MeshAgent> => {
    const hostId = `host-${i + 1}`;
    const address = opts.hostAddresses?.[i] ?? '127.0.0.1';
    const a: MeshAgent = agents[i] ?? { name: `agent-${i + 1}`, hostId, address, proc: undefined, output: [] };
    agents[i] = a;
    const args = [
      warmpoolBin, 'agent', '--etcd', opts.agentEtcdEndpoints?.(i) ?? endpoints(), '--prefix', prefix, '--host-id', hostId, '--address', address,
      '--run-dir', path.join(dir, hostId), '--lease-ttl', String(opts.leaseTtlSec ?? 3), '--cluster', cluster,
      '--stray-grace-sec', '5', '--instances', '8',
      ...(opts.agentArgs ?? []),
    ];
    if (consul) args.push('--consul-agent', `127.0.0.1:${consul.httpPort}`);
    const wrap = opts.agentCommandPrefix?.(i) ?? [];
    // `ip netns exec` execs the command: the pid stays the agent's, so signals reach it.
    a.proc = wrap.length
      ? killOnExit(spawn(wrap[0]!, [...wrap.slice(1), process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }))
      : killOnExit(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    pipeLines(a.proc, a, opts.onLine);
    return a;
  };

  const startRouter = async (i: number): Promise<MeshRouter> => {
    const name = `router-${i + 1}`;
    const r: MeshRouter = routers[i] ?? { name, proc: undefined, output: [], url: '', port: 0 };
    routers[i] = r;
    const port = r.port || opts.routerPorts?.[i] || 0;
    const args = [warmpoolBin, 'router', '--etcd', endpoints(), '--prefix', prefix, '--listen', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
    if (opts.defaultService) args.push('--default-service', opts.defaultService);
    if (consul) args.push('--consul-agent', `127.0.0.1:${consul.httpPort}`);
    const p = killOnExit(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    r.proc = p;
    const listening = new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        const m = /"msg":"router listening","url":"([^"]+)","port":(\d+)/.exec(d.toString());
        if (m) {
          r.url = m[1]!;
          r.port = Number(m[2]);
          p.stdout?.off('data', onData);
          resolve();
        }
      };
      p.stdout?.on('data', onData);
      p.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening: ${r.output.slice(-5).join('\n')}`)));
    });
    pipeLines(p, r, opts.onLine);
    await listening;
    return r;
  };

  const mesh: Mesh = {
    etcd,
    get consul() { return consul; },
    prefix,
    cluster,
    agents,
    routers,
    cli,
    startAgent,
    async stopAgent(i, signal = 'SIGTERM') { await stopProc(agents[i]?.proc, signal); },
    startRouter,
    async stopRouter(i, signal = 'SIGTERM') { await stopProc(routers[i]?.proc, signal); },
    async stop() {
      await Promise.all([...agents, ...routers].map((p) => stopProc(p.proc, 'SIGKILL')));
      // Until none appears for a moment: a killed agent's create may still be in the engine.
      await removeContainersUntilGone('warmpool.cluster', cluster).catch(() => undefined);
      await consul?.stop();
      await etcd.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    if (opts.consul) {
      step('starting Consul (dev agent)...');
      consul = await startConsul();
    }
    if (opts.services) {
      step(`applying the services file (${opts.services.services.map((v) => (v as { name?: string }).name).join(', ')})...`);
      const file = path.join(dir, 'services.json');
      writeFileSync(file, JSON.stringify(opts.services));
      const r = await cli('apply', '-f', file);
      if (r.code !== 0) throw new Error(`warmpool apply failed: ${r.stderr}`);
    }
    for (let i = 0; i < (opts.agents ?? 2); i++) {
      step(`starting agent-${i + 1} (host-${i + 1})...`);
      await startAgent(i);
    }
    for (let i = 0; i < (opts.routers ?? 2); i++) {
      step(`starting router-${i + 1}...`);
      await startRouter(i);
    }
  } catch (err) {
    await mesh.stop();
    throw err;
  }
  return mesh;
}
