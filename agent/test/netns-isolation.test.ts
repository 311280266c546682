import t from 'tap';
import { isolateNetns, isolationRule, type Exec } from '../src/netns-isolation.js';

t.test('the rule: new TCP connections not over loopback are reset unless to the sidecar port', async (t) => {
  t.same(isolationRule(9000), ['-w', '5', '-A', 'INPUT', '!', '-i', 'lo', '-p', 'tcp', '--syn', '!', '--dport', '9000', '-j', 'REJECT', '--reject-with', 'tcp-reset']);
});

t.test('installed with nsenter in the process\'s network namespace; failures name the command', async (t) => {
  const calls: string[][] = [];
  const ok: Exec = async (file, args) => { calls.push([file, ...args]); return { stdout: '', stderr: '' }; };
  await isolateNetns(process.pid, 9001, ok);
  t.same(calls[0]!.slice(0, 3), ['nsenter', `--net=/proc/${process.pid}/ns/net`, 'iptables']);
  t.ok(calls[0]!.includes('9001'));
  const failing: Exec = async () => { throw Object.assign(new Error('exit 1'), { stderr: 'iptables: Permission denied (you must be root).\n' }); };
  await t.rejects(isolateNetns(process.pid, 9001, failing), {
    code: 'WARMPOOL_ISOLATION_FAILED', message: /cannot isolate the app port: nsenter --net=\/proc\/\d+\/ns\/net iptables failed: iptables: Permission denied/,
  });
  await t.rejects(isolateNetns(0, 9001, ok), { code: 'WARMPOOL_ISOLATION_FAILED', message: /has no process/ });
});
