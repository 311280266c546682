// A demand-driven pool (`warm: { min, max, target }`) across three racing agents: the pool
// grows with the claim rate, never holds more unclaimed instances than the policy's max
// (no waiters here, so no demand slots), every agent converges on the same size, the size
// never rises again after it fell (no flapping), it shrinks only after the cool-down, and
// no booting instance is destroyed to shrink.
import t from 'tap';
import { poolView, type ServiceSpec } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

const policy = { min: 1, max: 6, target: 0.99, windowSec: 20, cooldownSec: 10, windows: [] };

t.test('three agents follow a changing demand-driven target without overshoot or flapping', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  for (const host of ['host-a', 'host-b', 'host-c']) await h.startAgent(host);
  const spec: ServiceSpec = chatSpec({ warm: policy });
  await h.putService(spec);

  // Watch every change: unclaimed count, the size the registry implies, booting deaths.
  const sizes: { at: number; size: number }[] = [];
  let maxUnclaimed = 0;
  const lastState = new Map<string, string>();
  const bootsDestroyed: string[] = [];
  const observe = (): void => {
    const view = poolView(h.cache, spec, Date.now());
    if (sizes.at(-1)?.size !== view.size) {
      sizes.push({ at: Date.now(), size: view.size });
      if (process.env.WARMPOOL_TEST_LOG) process.stderr.write(`size ${view.size}: rate ${view.sizing?.ratePerSec} boot ${view.sizing?.bootMs} arrivals ${[...h.cache.claims.values()].length} ${view.sizing?.reason}\n`);
    }
    maxUnclaimed = Math.max(maxUnclaimed, h.unclaimed().length);
    const now = new Map(h.instances().map((i) => [i.id, i.state]));
    for (const [id, state] of lastState) if (!now.has(id) && state === 'booting' && !h.cache.claims.has(id)) bootsDestroyed.push(id);
    lastState.clear();
    for (const [id, s] of now) lastState.set(id, s);
  };
  h.cache.on('change', observe);
  const ticker = setInterval(observe, 250);
  t.teardown(() => { clearInterval(ticker); h.cache.off('change', observe); });

  await h.waitReady(1, { timeoutMs: 60_000 });
  t.equal(poolView(h.cache, spec, Date.now()).size, 1, 'no claims yet: at the minimum');

  // 10 sessions in quick succession, each ended at once (the claims stay in the registry's history).
  await h.claimAndEnd(10);
  // On a slow machine the claims spread over many seconds, and the measured rate may rise and
  // fall while they come (that is demand changing, not flapping): hysteresis is judged from
  // the moment demand stops.
  const claimsDoneAt = Date.now();
  const grown = poolView(h.cache, spec, Date.now(), { explain: true });
  t.ok(grown.size > 1, `the size grew with the claim rate: ${grown.size} (${grown.sizing?.reason})`);
  t.ok(grown.sizing!.bootMeasured, `boot time measured: ${grown.sizing!.bootMs} ms`);
  await eventually(() => h.unclaimed().length >= grown.size, { timeoutMs: 60_000, what: `the agents grow the pool to ${grown.size}` });
  t.pass(`pool grown to ${h.unclaimed().length}`);

  // Nobody comes any more: held through the cool-down, then back to the minimum.
  await eventually(() => poolView(h.cache, spec, Date.now()).size === 1, { timeoutMs: 60_000, intervalMs: 500, what: 'size back to min' });
  await h.waitReady(1, { timeoutMs: 60_000 });
  await eventually(() => h.unclaimed().length === 1, { timeoutMs: 30_000, what: 'surplus retired' });

  const series = sizes.map((s) => s.size);
  // The first fall after demand stopped (the size in force then is the last one before it).
  const after = Math.max(1, sizes.findIndex((s) => s.at > claimsDoneAt));
  const firstDrop = series.findIndex((s, i) => i >= after && s < series[i - 1]!);
  t.ok(firstDrop > 0, `the size fell: ${series.join(' -> ')}`);
  let rise = firstDrop - 1;
  while (rise > 0 && series[rise]! <= series[rise - 1]!) rise--;
  const lastRise = sizes[rise]!.at;
  // Sampled every 250 ms: allow one sample of slack.
  t.ok(sizes[firstDrop]!.at - lastRise >= policy.cooldownSec * 1000 - 500, `shrank only after the cool-down (${sizes[firstDrop]!.at - lastRise} ms after the last rise)`);
  t.ok(series.slice(firstDrop).every((s, i, a) => i === 0 || s <= a[i - 1]!), 'never rose again once it fell (no flapping)');
  t.ok(maxUnclaimed <= policy.max, `never more than max unclaimed instances (${maxUnclaimed} <= ${policy.max})`);
  t.same(bootsDestroyed, [], 'no booting instance was destroyed to shrink');
});
