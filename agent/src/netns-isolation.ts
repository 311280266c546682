import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { AgentError } from './errors.js';

/**
 * Packet filtering in a pod's network namespace, set up from the host before the app starts,
 * as a CNI plugin does (docs/ARCHITECTURE.md, "Isolation of the app port"): every new TCP
 * connection that does not come over loopback is refused unless it is to the sidecar's port.
 * The app may listen on 0.0.0.0 on any port; from the host and from other containers only the
 * sidecar answers. Replies to the app's own outbound connections (SYN-ACK) and UDP (DNS) pass.
 *
 * Needs root on the host, `nsenter` (util-linux) and `iptables` / `ip6tables` (which the Docker
 * engine needs too); the container processes get no capability for it.
 */

/** The rule, as iptables arguments (the same for ip6tables). */
export function isolationRule(allowTcpPort: number): string[] {
  return ['-w', '5', '-A', 'INPUT', '!', '-i', 'lo', '-p', 'tcp', '--syn', '!', '--dport', String(allowTcpPort), '-j', 'REJECT', '--reject-with', 'tcp-reset'];
}

export type Exec = (file: string, args: string[]) => Promise<{ stdout: string; stderr: string }>;

const execp: Exec = (file, args) => new Promise((resolve, reject) => {
  execFile(file, args, { timeout: 15_000 }, (err, stdout, stderr) => {
    if (err) reject(Object.assign(err, { stderr }));
    else resolve({ stdout, stderr });
  });
});

/**
 * Installs the rule in the network namespace of process `pid` (the pod's namespace owner).
 * IPv6 is filtered too when the namespace has IPv6 addresses. Throws AgentError
 * WARMPOOL_ISOLATION_FAILED naming the command that failed.
 */
export async function isolateNetns(pid: number, allowTcpPort: number, exec: Exec = execp): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 0) throw new AgentError('WARMPOOL_ISOLATION_FAILED', `cannot isolate the pod: its container has no process (pid ${pid})`);
  const netns = `--net=/proc/${pid}/ns/net`;
  const run = async (tool: string): Promise<void> => {
    try {
      await exec('nsenter', [netns, tool, ...isolationRule(allowTcpPort)]);
    } catch (err) {
      const detail = ((err as { stderr?: string }).stderr || (err as Error).message).trim().split('\n')[0];
      throw new AgentError('WARMPOOL_ISOLATION_FAILED', `cannot isolate the app port: nsenter ${netns} ${tool} failed: ${detail}`, { cause: err });
    }
  };
  await run('iptables');
  // /proc/PID/net/if_inet6 lists the namespace's IPv6 addresses (empty or absent: IPv6 is off there).
  const v6 = await readFile(`/proc/${pid}/net/if_inet6`, 'utf8').catch(() => '');
  if (v6.split('\n').some((l) => l.trim() && !/\slo$/.test(l.trim()))) await run('ip6tables');
}
