import t from 'tap';
import { ServiceBackoff } from '../src/backoff.js';

t.test('exponential per service, capped, reset by success and by a long quiet period', async (t) => {
  let now = 0;
  const b = new ServiceBackoff({ baseMs: 1000, maxMs: 8000, resetAfterMs: 60_000, now: () => now, random: () => 0.5 });
  const delays = [1, 2, 3, 4, 5].map(() => b.failure('chat', 'boom').lastDelayMs);
  t.same(delays, [1000, 2000, 4000, 8000, 8000]);
  t.equal(b.until('chat'), 8000);
  t.equal(b.failure('other', 'x').failures, 1, 'services are independent');
  b.success('chat');
  t.equal(b.until('chat'), undefined);
  t.equal(b.failure('chat', 'x').failures, 1);
  now = 200_000;
  t.equal(b.failure('chat', 'x').failures, 1, 'a failure long after the last one starts over');
  t.same([...b.active().keys()], ['chat']);
});

t.test('jitter stays within +-20 %', async (t) => {
  const lo = new ServiceBackoff({ baseMs: 1000, maxMs: 8000, resetAfterMs: 1e9, now: () => 0, random: () => 0 }).failure('s', '').lastDelayMs;
  const hi = new ServiceBackoff({ baseMs: 1000, maxMs: 8000, resetAfterMs: 1e9, now: () => 0, random: () => 0.999999 }).failure('s', '').lastDelayMs;
  t.equal(lo, 800);
  t.equal(hi, 1200);
});
