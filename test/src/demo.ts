/**
 * `npm run demo`: a local Warmpool mesh with the demo chatbot. etcd, Consul, two agents
 * acting as two hosts, two routers; services: chatbot, warm 3, BOOT_SECONDS 20.
 * Ctrl-C stops everything it started and removes its containers.
 */
import net from 'node:net';
import { ownSignals } from './children.js';
import { startMesh, type Mesh } from './mesh.js';

const bootSeconds = process.env.BOOT_SECONDS ?? '20';

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const say = (s: string): void => { process.stdout.write(`${s}\n`); };

const running: { mesh?: Mesh; poll?: NodeJS.Timeout } = {};
let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(running.poll);
  say('\nstopping the mesh: routers, agents, Consul, etcd; removing its containers...');
  await running.mesh?.stop().catch((err: unknown) => say(`error while stopping: ${(err as Error).message}`));
  say('stopped.');
  process.exit(code);
}
// Ctrl-C stops the mesh gracefully (agents first, then the containers go): the test
// helpers' safety net must not SIGKILL everything first.
ownSignals();
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

const ports = [8080, 8081];
const routerPorts = await Promise.all(ports.map(async (p) => ((await portFree(p)) ? p : 0)));
say('starting etcd, Consul, 2 agents (host-1, host-2) and 2 routers...');
const mesh = await startMesh({
  agents: 2,
  routers: 2,
  consul: true,
  routerPorts,
  leaseTtlSec: 10,
  defaultService: 'chatbot',
  services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3, maxPerHost: 6, bootTimeoutSec: 120, readiness: { intervalMs: 500 }, env: { BOOT_SECONDS: bootSeconds } }] },
});
running.mesh = mesh;
const r1 = mesh.routers[0]!.url;
const r2 = mesh.routers[1]!.url;
const env = `WARMPOOL_ETCD=${mesh.etcd.endpoints.join(',')} WARMPOOL_PREFIX=${mesh.prefix}`;
say(`
Warmpool demo is up.
  registry   etcd ${mesh.etcd.endpoints.join(',')}  prefix ${mesh.prefix}
  consul     http://127.0.0.1:${mesh.consul!.httpPort}  DNS 127.0.0.1:${mesh.consul!.dnsPort}
  routers    ${r1}  ${r2}
  dashboard  ${r1}/dashboard
  containers docker ps --filter label=warmpool.cluster=${mesh.cluster}

The chatbot takes ${bootSeconds} s to "load its model"; watch 3 instances boot:
  ${env} node cli/bin/warmpool.js status

Chat (a session of your own, served through either router):
  SID=$(curl -s -XPOST ${r1}/v1/sessions -H 'content-type: application/json' -d '{"service":"chatbot"}' | sed -E 's/.*"sessionId":"([^"]+)".*/\\1/')
  curl -s ${r2}/v1/sessions/$SID/proxy/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"hello"}]}'
  curl -s -XDELETE ${r1}/v1/sessions/$SID

With the openai client (node):
  new OpenAI({ baseURL: '${r1}/v1/sessions/' + SID + '/proxy/v1', apiKey: 'unused' })

Consul DNS (ready, unclaimed instances / routers):
  dig @127.0.0.1 -p ${mesh.consul!.dnsPort} chatbot.service.consul SRV +short
  dig @127.0.0.1 -p ${mesh.consul!.dnsPort} warmpool-router.service.consul SRV +short

The whole state:  ETCDCTL_API=3 etcdctl --endpoints ${mesh.etcd.endpoints[0]} get --prefix ${mesh.prefix}
Ctrl-C stops everything and removes the containers.
`);

// Report the pool as it fills, then stay up until Ctrl-C.
let last = '';
running.poll = setInterval(() => {
  void mesh.cli('status', '--json').then((r) => {
    if (r.code !== 0) return;
    const s = JSON.parse(r.stdout) as { services: { name: string; ready: number; booting: number; claimed: number }[]; sessions: number };
    const line = s.services.map((v) => `${v.name}: ${v.ready} ready, ${v.booting} booting, ${v.claimed} claimed`).join('; ') + `; ${s.sessions} sessions`;
    if (line !== last) say(`[pool] ${line}`);
    last = line;
  }).catch(() => undefined);
}, 2000);
running.poll.unref();
await new Promise(() => undefined);
