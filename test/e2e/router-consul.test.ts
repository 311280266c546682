// `warmpool router --consul-agent`: the router's Consul check follows its own /readyz, so
// Consul DNS (`warmpool-router.service.consul`) only names routers that can serve. A router
// started while etcd is unreachable is registered but critical; once etcd is reachable it
// turns ready and passing by itself (no request has to wake it); SIGTERM deregisters it.
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { eventually, freePort, infraSkip, killOnExit, repoRoot, startConsul, startEtcd, startTcpProxy, testRunId } from '../src/index.js';

interface HealthEntry { Service: { Port: number; Address: string }; Checks: { CheckID: string; Status: string }[] }
interface AgentCheck { CheckID: string; ServiceName: string; Status: string; Output: string }

t.test('the router\'s Consul check follows /readyz', { skip: infraSkip('etcd', 'consul') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const consul = await startConsul();
  t.teardown(() => consul.stop());
  // etcd behind a cuttable link, cut before the router starts.
  const link = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(etcd.endpoints[0]!).port) });
  t.teardown(() => link.close());
  link.suspend();

  const port = await freePort();
  const proc = killOnExit(spawn(process.execPath, [
    path.join(repoRoot, 'cli', 'bin', 'warmpool.js'), 'router', '--etcd', link.url, '--prefix', `/wp-${testRunId()}/`,
    '--listen', '127.0.0.1', '--port', String(port), '--consul-agent', `127.0.0.1:${consul.httpPort}`, '--log-level', 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'WARMPOOL_ROUTER_WORKERS')) }));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(async () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); await exited; });
  await eventually(() => /router listening/.test(out) || (proc.exitCode !== null ? Promise.reject(new Error(out)) : false), { timeoutMs: 20_000, what: 'router listening' });

  const health = async (): Promise<HealthEntry[]> => (await (await fetch(`${consul.url}/v1/health/service/warmpool-router`)).json()) as HealthEntry[];
  // The local agent's view: Consul copies a check's output to the catalog only when its
  // status changes (or every few minutes), the agent has it at once.
  const ttlCheck = async (): Promise<AgentCheck | undefined> => {
    const checks = (await (await fetch(`${consul.url}/v1/agent/checks`)).json()) as Record<string, AgentCheck>;
    return Object.values(checks).find((c) => c.ServiceName === 'warmpool-router' && c.CheckID.endsWith(':ttl'));
  };

  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 503, 'without etcd the router says it is not ready');
  // A new TTL check starts critical with no output: wait for the router's own verdict.
  const critical = await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'critical' && c.Output !== '' ? c : false; }, { timeoutMs: 20_000, what: 'check critical' });
  t.match(critical.Output, /router not ready: HTTP 503, registry syncing/, `the check says why (${critical.Output})`);
  t.equal((await health())[0]?.Service.Port, port, 'registered with its port all the same');

  link.resume();
  const passing = await eventually(async () => { const c = await ttlCheck(); return c?.Status === 'passing' ? c : false; }, { timeoutMs: 40_000, what: 'check passing once etcd is reachable' });
  t.match(passing.Output, /router ready/, 'passing once etcd is reachable, with no request needed to wake the router');
  t.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200, '/readyz agrees');

  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
  t.same(await health(), [], 'deregistered');
});
