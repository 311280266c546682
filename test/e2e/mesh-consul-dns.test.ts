import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startMesh, infraSkip, eventually } from '../src/index.js';

const exec = promisify(execFile);

async function srvPorts(dnsPort: number, name: string): Promise<string[]> {
  const { stdout } = await exec('dig', ['@127.0.0.1', '-p', String(dnsPort), name, 'SRV', '+short', '+time=2', '+tries=1']);
  return stdout.split('\n').filter(Boolean).map((l) => l.split(' ')[2]!).sort();
}

t.test('etcd registry + Consul DNS: agents publish ready instances, routers publish themselves', { skip: infraSkip('etcd', 'docker', 'consul', 'dig') }, async (t) => {
  const mesh = await startMesh({
    agents: 2, routers: 2, consul: true, leaseTtlSec: 3,
    services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 2, bootTimeoutSec: 30, readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: '1' } }] },
  });
  t.teardown(() => mesh.stop());
  const dns = mesh.consul!.dnsPort;
  const readyPorts = async (): Promise<string[]> => {
    const st = await fetch(`${mesh.routers[0]!.url}/v1/services/chatbot/instances`);
    const body = (await st.json()) as { instances: { state: string; address: string; sessionId: string | null }[] };
    return body.instances.filter((i) => i.state === 'ready' && !i.sessionId).map((i) => i.address.split(':')[1]!).sort();
  };
  await eventually(async () => (await readyPorts()).length === 2, { timeoutMs: 60_000, intervalMs: 300, what: '2 ready' });
  await eventually(async () => JSON.stringify(await srvPorts(dns, 'chatbot.service.consul')) === JSON.stringify(await readyPorts()), { timeoutMs: 20_000, intervalMs: 300, what: 'DNS = ready set' });
  t.pass('chatbot.service.consul lists exactly the ready, unclaimed instances');
  // Each router registers once it has listed the registry, on its own schedule.
  const routerPorts = mesh.routers.map((r) => String(r.port)).sort();
  await eventually(async () => JSON.stringify(await srvPorts(dns, 'warmpool-router.service.consul')) === JSON.stringify(routerPorts), { timeoutMs: 20_000, intervalMs: 300, what: 'both routers in DNS' });
  t.same(await srvPorts(dns, 'warmpool-router.service.consul'), routerPorts, 'warmpool-router.service.consul lists both routers');

  // A claim takes its instance out of DNS; the replacement joins when ready.
  const res = await fetch(`${mesh.routers[1]!.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chatbot"}' });
  t.equal(res.status, 201);
  const { instanceId } = (await res.json()) as { instanceId: string };
  const claimedPort = await (async () => {
    const st = await fetch(`${mesh.routers[0]!.url}/v1/services/chatbot/instances`);
    const body = (await st.json()) as { instances: { id: string; address: string }[] };
    return body.instances.find((i) => i.id === instanceId)!.address.split(':')[1]!;
  })();
  await eventually(async () => {
    const ports = await srvPorts(dns, 'chatbot.service.consul');
    return !ports.includes(claimedPort) && ports.length === 2 && JSON.stringify(ports) === JSON.stringify(await readyPorts());
  }, { timeoutMs: 30_000, intervalMs: 300, what: 'claimed out, replacement in' });
  t.pass('claimed instance left DNS; its replacement joined');
});
