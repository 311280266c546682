// Timed stages in the router (issue 16): /metrics has a histogram per stage fed from the
// instance records, each instance counted once; the dashboard state carries the stages.
import t from 'tap';
import type { InstanceRecord } from '@warmpool/registry';
import { harness } from './fixtures.js';

t.test('stage histograms and dashboard stages from the registry', async (t) => {
  const h = await harness({ ready: 0 });
  t.teardown(() => h.close());
  const rec = (id: string, state: InstanceRecord['state'], stages?: InstanceRecord['stages']): InstanceRecord => ({
    id, service: 'chatbot', host: 'host-a', state, address: '127.0.0.1:1', containerId: `c-${id}`, slot: null,
    createdAt: Date.now(), readyAt: null, bootMs: stages?.bootMs ?? null, ...(stages ? { stages } : {}),
  });
  await h.host.putInstance(rec('early', 'ready', { createMs: 800, bootMs: 4000, warmupMs: null }));
  await h.host.putInstance(rec('w1', 'warming'));
  const count = async (stage: string): Promise<number> => {
    const body = (await h.app.inject({ url: '/metrics' })).body;
    const m = new RegExp(`^warmpool_instance_stage_duration_seconds_count\\{service="chatbot",stage="${stage}"\\} (\\d+)$`, 'm').exec(body);
    return m ? Number(m[1]) : 0;
  };
  const until = async (fn: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + 5000;
    while (!(await fn())) { if (Date.now() > end) throw new Error('timed out'); await new Promise((r) => setTimeout(r, 20)); }
  };
  await until(async () => (await count('boot')) === 1);
  t.equal(await count('create'), 1);
  t.equal(await count('warmup'), 0, 'a stage not measured is not observed');
  await h.host.putInstance(rec('w1', 'ready', { createMs: 1000, bootMs: 2000, warmupMs: 25_000 }));
  await until(async () => (await count('warmup')) === 1);
  t.equal(await count('boot'), 2);
  // The same instance written again (claimed) is not counted twice.
  await h.host.putInstance(rec('w1', 'claimed', { createMs: 1000, bootMs: 2000, warmupMs: 25_000 }));
  await h.host.putInstance(rec('w2', 'ready', { createMs: 1, bootMs: 1, warmupMs: 1 }));
  await until(async () => (await count('warmup')) === 2);
  t.equal(await count('boot'), 3, 'w1 counted once, w2 once');
  const body = (await h.app.inject({ url: '/metrics' })).body;
  t.match(body, /warmpool_instance_stage_duration_seconds_bucket\{le="30",service="chatbot",stage="warmup"\} 2/);

  const state = (await h.app.inject({ url: '/v1/dashboard/state' })).json() as { instances: { id: string; stages: unknown }[]; status: { services: { typicalStages: unknown }[] } };
  t.same(state.instances.find((i) => i.id === 'w1')?.stages, { createMs: 1000, bootMs: 2000, warmupMs: 25_000 });
  t.match(state.status.services[0]?.typicalStages, { createMs: 800, bootMs: 2000, warmupMs: 25_000 });
});
