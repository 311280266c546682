/**
 * `npm run demo`: a local Warmpool mesh with the demo chatbot. etcd, Consul, two agents
 * acting as two hosts, two routers on 127.0.0.1:8080 and :8081 (WARMPOOL_DEMO_PORTS
 * overrides them; `0` picks free ports); services: chatbot, warm 3, BOOT_SECONDS 20.
 * The registry uses the CLI's default prefix, so `npx warmpool status` with only the
 * etcd address looks where the demo writes. Ctrl-C stops everything it started and
 * removes its containers.
 */
import net from 'node:net';
import { DEFAULT_PREFIX } from '@warmpool/registry';
import { ownSignals } from './children.js';
import { startMesh, type Mesh } from './mesh.js';
import { reportPool, type PoolReporter } from './demo-pool.js';

const bootSeconds = process.env.BOOT_SECONDS ?? '20';

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const say = (s: string): void => { process.stdout.write(`${s}\n`); };
const started = Date.now();
const step = (s: string): void => say(`demo: [${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s] ${s}`);

const running: { mesh?: Mesh; pool?: PoolReporter } = {};
let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  say('\nstopping the mesh: routers, agents, Consul, etcd; removing its containers...');
  await running.pool?.close().catch(() => undefined);
  await running.mesh?.stop().catch((err: unknown) => say(`error while stopping: ${(err as Error).message}`));
  say('stopped.');
  process.exit(code);
}
// Ctrl-C stops the mesh gracefully (agents first, then the containers go): the test
// helpers' safety net must not SIGKILL everything first.
ownSignals();
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
// A closed terminal (SIGHUP) stops it too; its output then has nowhere to go, which must not
// end the process before the mesh is stopped.
process.on('SIGHUP', () => void shutdown(0));
process.stdout.on('error', () => undefined);
// `kill` of `npm run demo` ends npm but not this process: a demo whose parent is gone stops.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) void shutdown(0); }, 1000).unref();

// The README promises these ports: a port already taken is an error, never a silent move
// to another port (a second demo would otherwise answer the README's commands).
const portsSpec = process.env.WARMPOOL_DEMO_PORTS ?? '8080,8081';
const ports = portsSpec === '0' ? [0, 0] : portsSpec.split(',').map(Number);
if (ports.length !== 2 || ports.some((p) => !Number.isInteger(p) || p < 0 || p > 65535)) {
  say(`demo: WARMPOOL_DEMO_PORTS must be two ports "PORT1,PORT2" or "0" (free ports), got ${JSON.stringify(portsSpec)}`);
  process.exit(2);
}
for (const p of ports) {
  if (p && !(await portFree(p))) {
    say(`demo: port ${p} on 127.0.0.1 is already in use (another demo, or another program).\n`
      + `  Stop it, or run the demo on other ports: WARMPOOL_DEMO_PORTS=0 npm run demo (any two free ports), or WARMPOOL_DEMO_PORTS=PORT1,PORT2.`);
    process.exit(1);
  }
}

step('starting etcd, Consul, 2 agents (host-1, host-2) and 2 routers');
try {
  running.mesh = await startMesh({
    agents: 2,
    routers: 2,
    consul: true,
    routerPorts: ports,
    prefix: DEFAULT_PREFIX,
    onStep: step,
    leaseTtlSec: 10,
    defaultService: 'chatbot',
    services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3, maxPerHost: 6, bootTimeoutSec: 120, readiness: { intervalMs: 500 }, env: { BOOT_SECONDS: bootSeconds } }] },
  });
} catch (err) {
  say(`demo: could not start the mesh: ${(err as Error).message}`);
  process.exit(1);
}
const mesh = running.mesh;
const r1 = mesh.routers[0]!.url;
const r2 = mesh.routers[1]!.url;
const etcdUrl = mesh.etcd.endpoints.join(',');
say(`
Warmpool demo is up.
  registry   etcd ${etcdUrl}  prefix ${mesh.prefix}
  consul     http://127.0.0.1:${mesh.consul!.httpPort}  DNS 127.0.0.1:${mesh.consul!.dnsPort}
  routers    ${r1}  ${r2}
  dashboard  ${r1}/dashboard
  containers docker ps --filter label=warmpool.cluster=${mesh.cluster}

The chatbot takes ${bootSeconds} s to "load its model"; [pool] lines below show 3 instances boot.
The fleet (in this directory; \`warmpool\` once installed from the package, see docs/operations.md):
  WARMPOOL_ETCD=${etcdUrl} npx warmpool status
  WARMPOOL_ETCD=${etcdUrl} npx warmpool sessions

Chat (a session of your own, served through either router; it waits for a booting
instance when none is ready yet):
  SID=$(WARMPOOL_ETCD=${etcdUrl} npx warmpool sessions create chatbot --router ${r1} --quiet)
  curl -s ${r2}/v1/sessions/$SID/proxy/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"hello"}]}'
  curl -s -XDELETE ${r1}/v1/sessions/$SID
The same with curl only:
  curl -s -XPOST ${r1}/v1/sessions -H 'content-type: application/json' -d '{"service":"chatbot"}'

With the openai client (node):
  new OpenAI({ baseURL: '${r1}/v1/sessions/' + SID + '/proxy/v1', apiKey: 'unused' })

Consul DNS (ready, unclaimed instances / routers):
  dig @127.0.0.1 -p ${mesh.consul!.dnsPort} chatbot.service.consul SRV +short
  dig @127.0.0.1 -p ${mesh.consul!.dnsPort} warmpool-router.service.consul SRV +short

The whole state:  ETCDCTL_API=3 etcdctl --endpoints ${mesh.etcd.endpoints[0]} get --prefix ${mesh.prefix}
Ctrl-C stops everything and removes the containers.
`);

// Report the pool as it fills (one watch, in this process), then stay up until Ctrl-C.
running.pool = await reportPool(mesh.etcd.endpoints, mesh.prefix, say);
await new Promise(() => undefined);
