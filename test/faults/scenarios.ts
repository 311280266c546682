import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { slowness, type Mesh } from '../src/index.js';
import type { RegistryMonitor } from './monitor.js';
import type { NetnsHost } from './netns.js';

const exec = promisify(execFile);

/** What a scenario gets to inject its fault and tell the harness what happened when. */
export interface ScenarioContext {
  mesh: Mesh;
  monitor: RegistryMonitor;
  /** The simulated host in its own network namespace (scenarios with `netns`). */
  host: NetnsHost | undefined;
  short: boolean;
  leaseTtlSec: number;
  /** The fault is in: recovery time counts from here. */
  injected(): void;
  /** The fault is over (process back, etcd back, link up): recovery can complete. */
  healed(): void;
  /** Work that must finish before the mesh is checked for orphans (a delayed restart). */
  background(p: Promise<unknown>): void;
  /** Extra fields for the scenario's JSON line. */
  note(key: string, value: unknown): void;
  log(msg: string): void;
  sleep(ms: number): Promise<void>;
}

export interface Scenario {
  name: string;
  summary: string;
  /** Part of `--short` (CI). */
  short: boolean;
  etcdMembers?: 1 | 3;
  routers?: number;
  /** Run agent 2 (host-2) in a network namespace of its own. */
  netns?: boolean;
  inject(ctx: ScenarioContext): Promise<void>;
}

async function containersOf(cluster: string, instance: string, role: 'app' | 'sidecar'): Promise<string[]> {
  const { stdout } = await exec('docker', ['ps', '-q', '--filter', `label=warmpool.cluster=${cluster}`, '--filter', `label=warmpool.instance=${instance}`, '--filter', `label=warmpool.role=${role}`]);
  return stdout.split('\n').filter(Boolean);
}

/**
 * A claimed and a ready instance, from the registry as the monitor sees it now. The claimed
 * one is the most recently claimed, claimed less than 2 s ago, so its session still has
 * turns to go (waits a little for one).
 */
async function pickVictims(ctx: ScenarioContext): Promise<{ claimed?: string; ready?: string }> {
  const deadline = Date.now() + 8_000;
  for (;;) {
    const s = ctx.monitor.latest;
    const claimed = s ? [...s.claimedAt].filter(([id, at]) => at > Date.now() - 2_000 && s.instances.some((i) => i.id === id)).sort((a, b) => b[1] - a[1]).map(([id]) => id) : [];
    const ready = s ? s.instances.filter((i) => i.state === 'ready' && !s.claims.has(i.id)).map((i) => i.id) : [];
    if ((claimed.length && ready.length) || Date.now() > deadline) {
      const r: { claimed?: string; ready?: string } = {};
      if (claimed.length) r.claimed = claimed[0]!;
      if (ready.length) r.ready = ready[Math.floor(Math.random() * ready.length)]!;
      return r;
    }
    await ctx.sleep(100);
  }
}

/**
 * docker kill the `role` container of a claimed and a ready instance. The victims are
 * picked from the registry and their containers listed right before the kill; an instance
 * whose containers went in between (its session ended, it was replaced) is not a failure of
 * the mesh: pick again, until at least one container was killed or the pick deadline
 * (60 s of work, stretched by the machine's slowness) passes.
 */
function dockerKillScenario(role: 'app' | 'sidecar'): Scenario['inject'] {
  return async (ctx) => {
    const deadline = Date.now() + 60_000 * slowness();
    let tries = 0;
    for (;;) {
      tries++;
      const v = await pickVictims(ctx);
      const targets = [v.claimed, v.ready].filter((x): x is string => !!x);
      const ids = (await Promise.all(targets.map((i) => containersOf(ctx.mesh.cluster, i, role)))).flat();
      // One at a time: `docker kill A B` fails as a whole when A is already gone.
      const killed = (await Promise.all(ids.map((id) => exec('docker', ['kill', id]).then(() => id, () => undefined)))).filter(Boolean);
      if (killed.length) {
        ctx.injected();
        ctx.healed();
        ctx.note('killed', { claimed: v.claimed ?? null, ready: v.ready ?? null, role, containers: killed.length, picks: tries });
        ctx.log(`docker kill ${role} of claimed ${v.claimed ?? '-'} and ready ${v.ready ?? '-'} (${killed.length} container(s), pick ${tries})`);
        return;
      }
      if (Date.now() > deadline) throw new Error(`no ${role} container to kill: ${tries} picks of a claimed and a ready instance found none running`);
      await ctx.sleep(200);
    }
  };
}

/** kill -9 the agent of host-1, start it again after `downMs`, note what it adopted. */
function killAgentScenario(downMs: (ctx: Parameters<Scenario['inject']>[0]) => number): Scenario['inject'] {
  return async (ctx) => {
    await ctx.mesh.stopAgent(0, 'SIGKILL');
    ctx.injected();
    const mark = ctx.mesh.agents[0]!.output.length;
    await ctx.sleep(downMs(ctx));
    await ctx.mesh.startAgent(0);
    ctx.healed();
    ctx.background((async () => {
      await ctx.sleep(4_000);
      const lines = ctx.mesh.agents[0]!.output.slice(mark);
      ctx.note('adopted', lines.filter((l) => l.includes('"msg":"adopted instance"')).length);
      ctx.note('removedAtStart', lines.filter((l) => l.includes('"msg":"removing a container pair found at start-up"')).length);
    })());
  };
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'baseline',
    summary: 'no fault: the same workload and measurements, for comparison',
    short: true,
    async inject(ctx) {
      ctx.injected();
      ctx.healed();
    },
  },
  {
    name: 'kill-router',
    summary: 'kill -9 one of three routers mid-workload; it is started again 5 s later',
    short: true,
    routers: 3,
    async inject(ctx) {
      const i = Math.floor(Math.random() * ctx.mesh.routers.length);
      await ctx.mesh.stopRouter(i, 'SIGKILL');
      ctx.injected();
      ctx.healed();
      ctx.log(`killed router-${i + 1}`);
      ctx.background((async () => {
        await ctx.sleep(5_000);
        await ctx.mesh.startRouter(i);
        ctx.log(`router-${i + 1} started again`);
      })());
    },
  },
  {
    name: 'kill-agent',
    summary: 'kill -9 the agent of host-1; restarted 1 s later (systemd RestartSec=1), it must adopt its containers',
    short: true,
    inject: killAgentScenario(() => 1_000),
  },
  {
    name: 'kill-agent-late',
    summary: 'kill -9 the agent of host-1 and restart it only after its lease expired (3 x TTL)',
    short: false,
    inject: killAgentScenario((ctx) => 3 * ctx.leaseTtlSec * 1000),
  },
  {
    name: 'kill-sidecar',
    summary: 'docker kill the sidecar of one claimed and one ready instance',
    short: true,
    inject: dockerKillScenario('sidecar'),
  },
  {
    name: 'kill-app',
    summary: 'docker kill the app container of one claimed and one ready instance',
    short: true,
    inject: dockerKillScenario('app'),
  },
  {
    name: 'kill-etcd-leader',
    summary: 'kill -9 the leader of a 3-member etcd cluster; it is started again 5 s later',
    short: true,
    etcdMembers: 3,
    async inject(ctx) {
      const leader = await ctx.mesh.etcd.leader();
      await ctx.mesh.etcd.stopMember(leader, 'SIGKILL');
      ctx.injected();
      ctx.healed();
      ctx.log(`killed etcd leader ${leader}`);
      ctx.note('leader', leader);
      ctx.background((async () => {
        await ctx.sleep(5_000);
        await ctx.mesh.etcd.startMember(leader);
        ctx.log(`etcd ${leader} started again; new leader ${await ctx.mesh.etcd.leader()}`);
      })());
    },
  },
  {
    name: 'etcd-down',
    summary: 'all three etcd members killed (-9) for 10 s, then started again',
    short: true,
    etcdMembers: 3,
    async inject(ctx) {
      const names = ctx.mesh.etcd.members.map((m) => m.name);
      await Promise.all(names.map((n) => ctx.mesh.etcd.stopMember(n, 'SIGKILL')));
      ctx.injected();
      await ctx.sleep(10_000);
      await Promise.all(names.map((n) => ctx.mesh.etcd.startMember(n)));
      ctx.healed();
      ctx.log('etcd back');
    },
  },
  {
    name: 'host-cutoff',
    summary: "host-2 (its agent in a network namespace) cut off for 3 x TTL: veth link down and the host's address withdrawn, then restored",
    short: true,
    netns: true,
    async inject(ctx) {
      const host = ctx.host!;
      const cutMs = 3 * ctx.leaseTtlSec * 1000;
      await host.cut();
      ctx.injected();
      ctx.note('cutSec', cutMs / 1000);
      await ctx.sleep(cutMs);
      await host.restore();
      ctx.healed();
      ctx.log('link restored');
    },
  },
];
