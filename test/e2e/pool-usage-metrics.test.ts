// Instance-seconds and GPU-seconds in a router's /metrics, fed from a real etcd: the
// counters grow by (instances in each state) x (time), per service, as records change.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Registry, parseServiceSpec, type InstanceRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { buildRouter } from '@warmpool/router';
import { startEtcd, infraSkip, eventually } from '../src/index.js';

t.test('instance-seconds and GPU-seconds follow the registry per state', { skip: infraSkip('etcd') }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const reg = new Registry(store, { prefix: `/usage-${randomBytes(3).toString('hex')}/` });
  t.teardown(async () => { await reg.close(); await store.close(); });
  const spec = parseServiceSpec({ name: 'llm', image: 'warmpool/chatbot-demo', warm: 0, resources: { gpus: 2 } });
  if (!spec.ok) throw new Error(JSON.stringify(spec.problems));
  await reg.putService(spec.spec);
  const host = await reg.openHost({ id: 'host-a', address: '127.0.0.1', capacity: { instances: 8, memoryMb: 0 }, labels: {}, draining: false, startedAt: Date.now(), agentVersion: 't' });
  t.teardown(() => host.close({ revoke: true }));
  const put = (id: string, state: InstanceRecord['state']) => host.putInstance({
    id, service: 'llm', host: 'host-a', state, address: '127.0.0.1:1', containerId: '', slot: null,
    createdAt: Date.now(), readyAt: state === 'ready' ? Date.now() : null, bootMs: null,
  });

  const router = buildRouter({ registry: reg });
  t.teardown(() => router.close());
  await router.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(router.server.address() as { port: number }).port}`;
  type Scrape = { at: number; v: Record<string, number> };
  const scrape = async (): Promise<Scrape> => {
    const body = await (await fetch(`${url}/metrics`)).text();
    const at = Date.now();
    const v: Record<string, number> = {};
    for (const m of body.matchAll(/^warmpool_pool_(instance|gpu)_seconds_total\{service="llm",state="(\w+)"\} ([0-9.e+-]+)$/gm)) v[`${m[1]}:${m[2]}`] = Number(m[3]);
    return { at, v };
  };
  /** Waits until /v1/services shows the states, then returns the growth rate per second of each counter over about 2 s. */
  const rates = async (want: Record<string, number>): Promise<Record<string, number>> => {
    await eventually(async () => {
      const s = ((await (await fetch(`${url}/v1/services`)).json()) as { services: { instances: Record<string, number> }[] }).services[0]!;
      return Object.entries(want).every(([k, n]) => (s.instances[k] ?? 0) === n);
    }, { timeoutMs: 10_000, intervalMs: 50, what: `states ${JSON.stringify(want)}` });
    const a = await scrape();
    await new Promise((r) => setTimeout(r, 2_000));
    const b = await scrape();
    const dt = (b.at - a.at) / 1000;
    const out: Record<string, number> = {};
    for (const k of Object.keys(b.v)) out[k] = Math.round(((b.v[k]! - (a.v[k] ?? 0)) / dt) * 10) / 10;
    return out;
  };
  const near = (got: Record<string, number>, want: Record<string, number>, what: string) => {
    const bad = Object.entries(want).filter(([k, n]) => Math.abs((got[k] ?? 0) - n) > 0.3);
    t.same(bad, [], `${what}: growth per second ${JSON.stringify(got)}`);
  };

  await put('a', 'booting');
  await put('b', 'ready');
  near(await rates({ booting: 1, ready: 1 }), { 'instance:booting': 1, 'instance:idle': 1, 'instance:busy': 0, 'gpu:idle': 2, 'gpu:busy': 0 }, 'one booting, one idle');

  await put('a', 'ready');
  const res = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'llm' }) });
  t.equal(res.status, 201, 'a session claims one of the two');
  near(await rates({ ready: 2 }), { 'instance:booting': 0, 'instance:idle': 1, 'instance:busy': 1, 'gpu:idle': 2, 'gpu:busy': 2 }, 'one idle, one claimed');

  await host.deleteInstance('llm', 'b');
  await host.deleteInstance('llm', 'a');
  near(await rates({}), { 'instance:booting': 0, 'instance:idle': 0, 'instance:busy': 0, 'gpu:idle': 0, 'gpu:busy': 0 }, 'no instances: nothing grows');
});
