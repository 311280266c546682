// An image that never becomes ready is destroyed after the boot timeout and replaced, with
// an exponential backoff that is visible in the registry (failed record) and the status.
import t from 'tap';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

t.test('never ready: replaced after the boot timeout, with visible backoff', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  const agent = await h.startAgent('host-a');
  const reasons = new Map<string, string>();
  const starts = new Map<string, number>();
  let maxFailed = 0;
  h.cache.on('change', (c: { kind: string; type: string; parts: string[] }) => {
    if (c.kind !== 'instances' || c.type !== 'put') return;
    const rec = h.cache.instances.get(c.parts[1]!)?.value;
    if (!rec) return;
    if (!starts.has(rec.id)) starts.set(rec.id, Date.now());
    let failed = 0;
    for (const { value } of h.cache.instances.values()) if (value.state === 'failed' && value.service === 'chat') failed++;
    maxFailed = Math.max(maxFailed, failed);
    if (rec.state === 'failed' && rec.reason) reasons.set(rec.id, rec.reason);
  });
  await h.putService(chatSpec({ name: 'chat', warm: 1, bootTimeoutSec: 1.5, env: { NEVER_READY: '1' } }));

  await eventually(() => reasons.size >= 3, { timeoutMs: 30_000, intervalMs: 100, what: 'three failed attempts' });
  const rs = [...reasons.values()];
  t.match(rs[0], /not ready|boot timeout/, `first failure: ${rs[0]}`);
  const waits = rs.map((r) => Number(/next attempt in ([\d.]+) s/.exec(r)?.[1]));
  const failures = rs.map((r) => Number(/failure (\d+) in a row/.exec(r)?.[1]));
  t.same(failures.slice(0, 3), [1, 2, 3], 'failures counted in a row');
  t.ok(waits[1]! > waits[0]! && waits[2]! > waits[1]!, `backoff grows: ${waits.slice(0, 3).join(' s, ')} s`);
  const ids = [...starts.keys()];
  const gaps = ids.slice(1).map((id, i) => starts.get(id)! - starts.get(ids[i]!)!);
  t.ok(gaps.every((g) => g >= 1500), `attempts are spaced by at least the boot timeout: ${gaps.join(', ')} ms`);
  const failedNow = h.instances().filter((i) => i.state === 'failed');
  t.ok(failedNow.length <= 1, 'one failed record is kept visible per service, not one per attempt');
  t.ok(maxFailed <= 1, `never two failed records at once, at any change the cache saw (max ${maxFailed})`);
  t.equal(agent.status().backoff.chat?.failures !== undefined, true, 'the agent status shows the backoff');

  // Fixing the service (a spec change) brings it up; the failed record goes away.
  await h.putService(chatSpec({ name: 'chat', warm: 1, bootTimeoutSec: 10 }));
  await h.waitReady(1, { timeoutMs: 30_000 });
  await eventually(() => h.instances().every((i) => i.state !== 'failed'), { what: 'failed record cleared once ready' });
});
