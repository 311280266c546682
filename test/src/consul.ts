import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePorts } from './ports.js';
import { eventually } from './eventually.js';
import { consulBin } from './infra.js';
import { killOnExit, removeOnExit } from './children.js';

export interface ConsulAgent {
  httpPort: number;
  dnsPort: number;
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:18500 */
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a private Consul dev agent on free loopback ports with a fresh data dir. */
export async function startConsul(): Promise<ConsulAgent> {
  const [http, dns, serfLan, serfWan, server, grpc] = (await freePorts(6)) as [number, number, number, number, number, number];
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-consul-'));
  removeOnExit(dir); // also when the test fails before its teardown stops this agent
  const args = [
    'agent', '-dev',
    '-bind', '127.0.0.1',
    '-client', '127.0.0.1',
    '-data-dir', dir,
    '-node', `warmpool-test-${path.basename(dir)}`,
    '-http-port', String(http),
    '-dns-port', String(dns),
    '-serf-lan-port', String(serfLan),
    '-serf-wan-port', String(serfWan),
    '-server-port', String(server),
    '-grpc-port', String(grpc),
    '-log-level', 'warn',
  ];
  const proc = killOnExit(spawn(consulBin, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 10_000) stderr += d.toString();
  });
  const url = `http://127.0.0.1:${http}`;
  try {
    await eventually(async () => {
      if (proc.exitCode !== null) throw new Error(`consul exited: ${stderr}`);
      const res = await fetch(`${url}/v1/status/leader`);
      const leader = (await res.json()) as string;
      if (!leader) throw new Error('no leader yet');
      return true;
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'consul leader' });
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    httpPort: http,
    dnsPort: dns,
    url,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        await new Promise<void>((resolve) => {
          proc.once('exit', () => resolve());
          proc.kill('SIGKILL');
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
