// A demand-driven pool shrinks when its cool-down ends, not at the agent's next resync: the
// size falls with no registry change (nobody arrives), so the agent plans again at the
// moment the sizing names (SizingResult.recheckAt). The agent here resyncs every 10 minutes.
import t from 'tap';
import { poolView, type ServiceSpec } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, FAST_TIMING, chatSpec, requireImages } from './fixtures/agent-harness.js';

const policy = { min: 1, max: 4, target: 0.99, windowSec: 10, cooldownSec: 10, windows: [] };

t.test('a demand-driven pool retires its surplus when the cool-down ends, with no resync', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a', { timing: { ...FAST_TIMING, resyncMs: 600_000, cacheResyncMs: 600_000 } });
  const spec: ServiceSpec = chatSpec({ warm: policy });
  await h.putService(spec);

  // Three sessions, ended at once: the claims stay in the history and raise the size.
  await h.claimAndEnd(3, { timeoutMs: 60_000 });
  const grown = poolView(h.cache, spec, Date.now()).size;
  t.ok(grown > 1, `the size grew: ${grown}`);
  await eventually(() => h.readyUnclaimed().length === grown, { timeoutMs: 60_000, what: `the grown pool ready (${grown})` });

  // Nobody comes: the sizing falls back to the minimum by itself (window + cool-down); the agent follows.
  const minAt = await eventually(() => {
    if (poolView(h.cache, spec, Date.now()).size !== 1) throw new Error('size above 1');
    return Date.now();
  }, { timeoutMs: 60_000, intervalMs: 100, what: 'size back to 1' });
  // The agent acts when the size falls (SizingResult.recheckAt): its first surplus instance
  // leaves at once; the others follow, one retirement (a few registry writes) each.
  const firstRetiredAt = await eventually(() => {
    if (h.unclaimed().length >= grown) throw new Error(`${h.unclaimed().length} unclaimed`);
    return Date.now();
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'the first surplus instance retired without a resync' });
  t.ok(firstRetiredAt - minAt < 5_000, `retiring began ${firstRetiredAt - minAt} ms after the size fell to 1 (resync every 600 s)`);
  await eventually(() => h.unclaimed().length === 1, { timeoutMs: 30_000, intervalMs: 100, what: 'all the surplus retired' });
  await eventually(async () => (await h.containers()).length === 2, { timeoutMs: 20_000, what: 'the surplus containers removed' });
  t.pass('one instance (app + sidecar) left');
});
