import t from 'tap';
import { Prober } from '../src/prober.js';
import type { ReadinessOptions } from '../src/config.js';
import { FakeClock } from './fake-clock.js';

const opts: ReadinessOptions = { path: '/health', expectStatus: 200, intervalMs: 100, timeoutMs: 50, bootTimeoutMs: 1000, failureThreshold: 3 };

function setup(statuses: (number | undefined)[]) {
  const clock = new FakeClock();
  const seen: string[] = [];
  let i = 0;
  const probe = async (): Promise<number | undefined> => statuses[Math.min(i++, statuses.length - 1)];
  const prober = new Prober(opts, probe, clock, clock.now());
  prober.on('state', (s: { state: string }) => seen.push(s.state));
  return { clock, prober, seen, probes: () => i };
}

t.test('503 while loading, then 200: ready with the measured boot time', async (t) => {
  const { clock, prober, seen } = setup([undefined, 503, 503, 200]);
  prober.start();
  await clock.advance(250);
  t.same(seen, [], 'still booting while the app answers 503 / not at all');
  await clock.advance(100);
  t.same(seen, ['ready']);
  t.equal(prober.snapshot().bootMs, 300, 'boot measured from the app start to the first good probe');
  prober.stop();
});

t.test('never ready: failed once the boot timeout passes, and probing stops', async (t) => {
  const { clock, prober, seen, probes } = setup([503]);
  prober.start();
  await clock.advance(950);
  t.same(seen, []);
  await clock.advance(100);
  t.same(seen, ['failed']);
  t.match(prober.snapshot().reason, /boot timeout 1 s/);
  const n = probes();
  await clock.advance(1000);
  t.equal(probes(), n, 'no probes after a final state');
  t.equal(clock.pending, 0, 'no timer left');
});

t.test('liveness: unhealthy only after failureThreshold misses in a row', async (t) => {
  const { clock, prober, seen } = setup([200, 500, 500, 200, undefined, 500, 500, 200]);
  prober.start();
  await clock.advance(0);
  t.same(seen, ['ready']);
  await clock.advance(300);
  t.same(seen, ['ready'], 'two misses then a success: still ready');
  await clock.advance(300);
  t.same(seen, ['ready', 'unhealthy'], 'three misses in a row');
  t.match(prober.snapshot().reason, /3 failed liveness probes/);
  prober.stop();
});
