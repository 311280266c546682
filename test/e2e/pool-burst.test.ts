// Waiting requests drive boots: a burst larger than the warm pool makes the fleet boot one
// instance per waiter at once (not warm-at-a-time), waiters are served, an agent killed
// while the pool grows is restarted and adopts its boots, and etcd going down during a
// burst loses nothing: demand is published again and no surplus is left behind.
import t from 'tap';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { Registry, waitingFor } from '@warmpool/registry';
import { startMesh, infraSkip, eventually } from '../src/index.js';

const BOOT_SECONDS = 2;

t.test('a burst of waiting sessions boots one instance per waiter at once', { skip: infraSkip('etcd', 'docker') }, async (t) => {
  const mesh = await startMesh({
    agents: 2,
    routers: 2,
    leaseTtlSec: 3,
    services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 1, maxPerHost: 8, bootTimeoutSec: 60, readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: String(BOOT_SECONDS) } }] },
  });
  t.teardown(() => mesh.stop());
  const store = new EtcdKvStore({ endpoints: mesh.etcd.endpoints });
  const registry = new Registry(store, { prefix: mesh.prefix });
  t.teardown(async () => { await registry.close(); await store.close(); });
  const cache = await registry.cache();
  const insts = () => [...cache.instances.values()].map((v) => v.value).filter((i) => i.service === 'chatbot');
  const unclaimed = () => insts().filter((i) => (i.state === 'ready' || i.state === 'booting') && !cache.claims.has(i.id));
  let maxBooting = 0;
  let maxWaiting = 0;
  cache.on('change', () => {
    maxBooting = Math.max(maxBooting, insts().filter((i) => i.state === 'booting').length);
    maxWaiting = Math.max(maxWaiting, waitingFor(cache, 'chatbot'));
  });
  await eventually(() => insts().some((i) => i.state === 'ready'), { timeoutMs: 60_000, what: 'warm 1 ready' });

  const burst = (n: number, wait: number) => Array.from({ length: n }, async (_, i) => {
    const r = mesh.routers[i % mesh.routers.length]!;
    const res = await fetch(`${r.url}/v1/sessions?wait=${wait}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }) });
    const body = (await res.json()) as { sessionId?: string; instanceId?: string; error?: { code: string } };
    return { status: res.status, retryAfter: res.headers.get('retry-after'), ...body };
  });
  const endAll = async (ids: string[]) => {
    for (const id of ids) await fetch(`${mesh.routers[0]!.url}/v1/sessions/${id}`, { method: 'DELETE' });
  };

  await t.test('8 waiters: parallel boots, FIFO service, an agent killed and restarted meanwhile', async (t) => {
    const N = 8;
    const pending = burst(N, 90);
    // Demand reaches the registry, and the fleet boots for it at once.
    await eventually(() => maxWaiting >= N - 2, { timeoutMs: 10_000, what: `routers publish their waiting sessions (max seen ${maxWaiting})` });
    await eventually(() => maxBooting >= N - 2, { timeoutMs: 20_000, what: `parallel boots (max seen ${maxBooting})` });
    // Kill an agent while the pool grows; systemd would restart it: it adopts its boots.
    await mesh.stopAgent(1, 'SIGKILL');
    await mesh.startAgent(1);
    const results = await Promise.all(pending);
    t.same(results.map((r) => r.status), Array(N).fill(201), 'every waiter got a session');
    t.equal(new Set(results.map((r) => r.instanceId)).size, N, 'each on its own instance');
    t.ok(maxBooting >= N - 2, `up to ${maxBooting} instances booted at once for ${N} waiters with warm 1`);
    await eventually(() => cache.demand.size === 0, { timeoutMs: 10_000, what: 'demand records gone once served' });
    // Back to warm 1 on top of the claimed ones: no surplus left from the burst.
    await eventually(() => unclaimed().length === 1 && unclaimed()[0]!.state === 'ready', { timeoutMs: 60_000, what: `pool back to 1 (now ${unclaimed().length})` });
    await endAll(results.map((r) => r.sessionId!));
  });

  await t.test('etcd down during a burst: demand published again, waiters served, no surplus', async (t) => {
    await eventually(() => cache.sessions.size === 0 && unclaimed().length === 1, { timeoutMs: 60_000, what: 'sessions ended' });
    maxBooting = 0;
    const N = 5;
    const pending = burst(N, 90);
    await eventually(() => waitingFor(cache, 'chatbot') >= 1, { timeoutMs: 10_000, what: 'some demand published' });
    const member = mesh.etcd.members[0]!.name;
    await mesh.etcd.stopMember(member, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 3_000));
    await mesh.etcd.startMember(member);
    const results = await Promise.all(pending);
    const served = results.filter((r) => r.status === 201);
    t.ok(results.every((r) => r.status === 201 || r.status === 503), `answers are sessions or clean 503s: ${results.map((r) => r.status).join(',')}`);
    t.ok(served.length >= N - 1, `${served.length}/${N} served despite the outage`);
    t.equal(new Set(served.map((r) => r.instanceId)).size, served.length, 'no instance handed out twice');
    await eventually(() => cache.demand.size === 0, { timeoutMs: 20_000, what: 'no demand left' });
    await eventually(() => unclaimed().length === 1, { timeoutMs: 60_000, what: `pool back to 1 (now ${unclaimed().length})` });
    await endAll(served.map((r) => r.sessionId!));
  });
});
