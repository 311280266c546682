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

t.test('liveness while busy: slow or failing health never counts; refused connections do', async (t) => {
  const clock = new FakeClock();
  let busy = true;
  let answer: number | 'refused' | undefined = 200;
  const seen: string[] = [];
  const prober = new Prober(opts, async () => 200, clock, clock.now(), {
    liveness: { path: '/live', expectStatus: 200, intervalMs: 100, timeoutMs: 50, failureThreshold: 2 },
    liveProbe: async () => answer,
    busy: () => busy,
  });
  prober.on('state', (s: { state: string }) => seen.push(s.state));
  prober.start();
  await clock.advance(0);
  t.same(seen, ['ready']);
  answer = undefined; // a busy server answering /health late
  await clock.advance(1000);
  t.same(seen, ['ready'], 'ten timed-out probes while a request is in flight: still ready');
  answer = 503;
  await clock.advance(1000);
  t.same(seen, ['ready'], 'non-OK answers while busy do not count either');
  answer = 'refused';
  await clock.advance(200);
  t.same(seen, ['ready', 'unhealthy'], 'nothing listens any more: unhealthy even while busy');
  t.match(prober.snapshot().reason, /connection refused/);

  const idle = new Prober(opts, async () => 200, clock, clock.now(), { liveProbe: async () => undefined, busy: () => false });
  const idleSeen: string[] = [];
  idle.on('state', (s: { state: string }) => idleSeen.push(s.state));
  idle.start();
  await clock.advance(400);
  t.same(idleSeen, ['ready', 'unhealthy'], 'idle: timeouts count (readiness threshold 3 when liveness is not configured)');
  t.match(idle.snapshot().reason, /3 failed liveness probes in a row \(last: no answer in time\)/);
  busy = false;
  prober.stop();
  idle.stop();
});

t.test('warm-up: booting -> warming -> ready with its duration; a failed warm-up fails the boot', async (t) => {
  const clock = new FakeClock();
  const seen: string[] = [];
  let finish: (why: string | undefined) => void = () => {};
  const prober = new Prober(opts, async () => 200, clock, clock.now(), { warmup: () => new Promise((r) => { finish = r; }) });
  prober.on('state', (s: { state: string }) => seen.push(s.state));
  await clock.advance(300);
  prober.start();
  await clock.advance(0);
  t.same(seen, ['warming'], 'ready to the readiness probe: warming, not ready');
  t.equal(prober.snapshot().bootMs, 300);
  await clock.advance(2000);
  finish(undefined);
  await clock.advance(0);
  t.same(seen, ['warming', 'ready']);
  t.equal(prober.snapshot().warmupMs, 2000, 'warm-up timed on its own');
  t.equal(prober.snapshot().bootMs, 300, 'boot time excludes the warm-up');
  prober.stop();

  const failing = new Prober(opts, async () => 200, clock, clock.now(), { warmup: async () => 'warm-up 1 of 1 failed: POST /api/generate answered 404, expected 200' });
  const states: string[] = [];
  failing.on('state', (s: { state: string }) => states.push(s.state));
  failing.start();
  await clock.advance(0);
  t.same(states, ['warming', 'failed']);
  t.match(failing.snapshot().reason, /POST \/api\/generate answered 404/);
  await clock.advance(1000);
  t.equal(clock.pending, 0, 'no probing after a failed warm-up');
});
