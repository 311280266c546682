// A demand-driven pool counts a session from the moment it is requested: the first request
// of a pool scaled to zero raises the size while it waits in a router's queue, not a boot
// later when it is served (real etcd, a real router in this process; nothing boots here, so
// the request waits its whole `wait`). The policy's `bootSec` stands in for the boot time
// until one is measured.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Registry, parseServiceSpec, poolView } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { eventually, infraSkip, startEtcd } from '../src/index.js';

t.test('a waiting request sizes an empty pool at once', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const prefix = `/arrivals-${randomBytes(3).toString('hex')}/`;
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const parsed = parseServiceSpec({ name: 'chat', image: 'warmpool/chatbot-demo', warm: { min: 0, max: 10, target: 0.99, windowSec: 300, cooldownSec: 300, bootSec: 60 } });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const spec = parsed.spec;
  await reg.putService(spec);
  // A host with room, so the pool is not capped to nothing (no agent runs: nothing boots).
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 20, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const cache = await reg.cache();
  t.equal(poolView(cache, spec, Date.now()).size, 0, 'scaled to zero before any request');

  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;
  const requestedAt = Date.now();
  const pending = fetch(`${url}/v1/sessions?wait=4`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chat' }) });

  // While the request waits: one waiter, and the pool sized from it (rate 1 per 60 s, the
  // shorter window, x bootSec 60 s: Poisson(1) 99 % quantile 4, + 1).
  const view = await eventually(() => {
    const v = poolView(cache, spec, Date.now());
    if (v.waiting !== 1) throw new Error(`waiting ${v.waiting}`);
    return v;
  }, { timeoutMs: 3_000, intervalMs: 20, what: 'the waiting request in the registry' });
  t.ok(Date.now() - requestedAt < 4_000, 'seen while the request still waits');
  t.equal(view.size, 5, `sized from the waiting request: ${view.sizing?.reason}`);
  t.equal(view.sizing?.bootMs, 60_000, 'the boot time is the policy\'s bootSec (none measured)');
  t.equal(view.sizing?.bootMeasured, false);
  t.equal(view.slots, 6, 'slots: the pool and the waiter\'s own boot');

  const res = await pending;
  t.equal(res.status, 503, 'nothing booted: the request gives up after its wait');
  await res.arrayBuffer();
});
