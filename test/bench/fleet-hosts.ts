/**
 * Simulated hosts for the fleet-scale benchmark, one process of several: each host does
 * toward the registry what an agent does (a host lease, its instances registered ready with
 * a pre-granted session lease, a watch of the registry: one cache per process), without
 * containers. Prints "listening 0" once registered, then a JSON line with its lease losses
 * every second.
 *
 * Args: ENDPOINTS PREFIX FIRST_HOST HOSTS INSTANCES_PER_HOST UPSTREAM_ADDRESS
 */
import { Registry, type HostSession } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';

const [endpoints, prefix, first, count, perHost, upstream] = process.argv.slice(2);
const store = new EtcdKvStore({ endpoints: endpoints!.split(',') });
const registry = new Registry(store, { prefix: prefix! });
const hosts: HostSession[] = [];
let losses = 0;
let recoveries = 0;

await registry.cache();
let next = Number(first);
const end = Number(first) + Number(count);
await Promise.all(Array.from({ length: 8 }, async () => {
  for (let n = next++; n < end; n = next++) {
    const id = `sim-${n}`;
    const hs = await registry.openHost({
      id, address: '127.0.0.1', capacity: { instances: Number(perHost), memoryMb: 0 }, labels: {}, draining: false,
      startedAt: Date.now(), agentVersion: 'bench',
    }, 10);
    hs.on('lost', () => { losses++; });
    hs.on('restored', () => { recoveries++; });
    hs.on('error', () => undefined);
    hosts.push(hs);
    for (let i = 0; i < Number(perHost); i++) {
      await hs.putInstance({
        id: `${id}-i${i}`, service: 'chatbot', host: id, state: 'ready', address: upstream!, containerId: '', slot: null,
        createdAt: Date.now(), readyAt: Date.now(), bootMs: 1,
      }, { sessionLeaseTtlSec: 600 });
    }
  }
}));
process.stdout.write('listening 0\n');
setInterval(() => process.stdout.write(`${JSON.stringify({ losses, recoveries })}\n`), 1000);
process.on('SIGTERM', () => {
  void Promise.all(hosts.map((h) => h.close({ revoke: true }).catch(() => undefined)))
    .then(() => registry.close()).then(() => store.close()).finally(() => process.exit(0));
});
