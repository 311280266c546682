import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const exec = promisify(execFile);

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await exec('ip', args, { timeout: 10_000 });
  return stdout;
}

/**
 * A simulated host with its own network namespace, joined to the root namespace by a veth
 * pair in a private /30 under 10.213.0.0/16:
 *
 *   root ns  [hostAddress .1/30] veth-r ===== veth-n [innerAddress .2/30]  netns (the agent)
 *
 * The agent runs in the namespace (`exec` prefix) and reaches etcd at hostAddress. Docker
 * runs in the root namespace, so the host's instances publish their ports on hostAddress
 * too: that address *is* the host, as routers and the agent see it.
 *
 * cut(): the link goes down and the host's address is withdrawn behind an `unreachable`
 * route, so the agent loses etcd and the routers lose the host's instances (EHOSTUNREACH,
 * immediately); nothing is ever sent off the machine. restore() undoes it; destroy()
 * removes the pair, the route and the namespace (idempotent).
 */
export interface NetnsHost {
  name: string;
  /** Root-side veth address: etcd listens here, instances publish here. */
  hostAddress: string;
  /** Namespace-side veth address. */
  innerAddress: string;
  /** Command prefix that runs a program inside the namespace. */
  exec: string[];
  cut(): Promise<void>;
  restore(): Promise<void>;
  destroy(): Promise<void>;
}

/** True when this process may create network namespaces (root with iproute2). */
export async function netnsAvailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    await ip('netns', 'list');
    return undefined;
  } catch (err) {
    return `ip netns unavailable: ${(err as Error).message}`;
  }
}

async function subnetInUse(net: string): Promise<boolean> {
  const out = await ip('-4', 'route', 'show', 'table', 'all');
  return out.includes(net.split('/')[0]!.split('.').slice(0, 3).join('.') + '.');
}

export async function createNetnsHost(): Promise<NetnsHost> {
  const tag = randomBytes(3).toString('hex');
  const name = `wpf-${tag}`;
  const vr = `wpf${tag}r`;
  const vn = `wpf${tag}n`;
  // A /30 nobody uses: 10.213.X.(4k)/30 with X chosen at random (and checked).
  let base = '';
  for (let tries = 0; tries < 20 && !base; tries++) {
    const candidate = `10.213.${randomInt(0, 256)}.${4 * randomInt(0, 64)}`;
    if (!(await subnetInUse(`${candidate}/30`))) base = candidate;
  }
  if (!base) throw new Error('no free /30 under 10.213.0.0/16');
  const parts = base.split('.').map(Number);
  const hostAddress = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3]! + 1}`;
  const innerAddress = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3]! + 2}`;
  const subnet = `${base}/30`;
  let cutRoute = false;
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    if (cutRoute) await ip('route', 'del', 'unreachable', subnet, 'metric', '4242').catch(() => undefined);
    await ip('link', 'del', vr).catch(() => undefined);
    await ip('netns', 'del', name).catch(() => undefined);
  };

  try {
    await ip('netns', 'add', name);
    await ip('link', 'add', vr, 'type', 'veth', 'peer', 'name', vn);
    await ip('link', 'set', vn, 'netns', name);
    await ip('addr', 'add', `${hostAddress}/30`, 'dev', vr);
    await ip('link', 'set', vr, 'up');
    await ip('netns', 'exec', name, 'ip', 'addr', 'add', `${innerAddress}/30`, 'dev', vn);
    await ip('netns', 'exec', name, 'ip', 'link', 'set', vn, 'up');
    await ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    await destroy();
    throw err;
  }

  return {
    name,
    hostAddress,
    innerAddress,
    exec: ['ip', 'netns', 'exec', name],
    async cut() {
      // The guard route first: once the address is gone, traffic to it must fail here
      // instead of following the default route off the machine.
      await ip('route', 'add', 'unreachable', subnet, 'metric', '4242');
      cutRoute = true;
      await ip('link', 'set', vr, 'down');
      await ip('addr', 'del', `${hostAddress}/30`, 'dev', vr);
    },
    async restore() {
      await ip('addr', 'add', `${hostAddress}/30`, 'dev', vr);
      await ip('link', 'set', vr, 'up');
      await ip('route', 'del', 'unreachable', subnet, 'metric', '4242');
      cutRoute = false;
    },
    destroy,
  };
}
