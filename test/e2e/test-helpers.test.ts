// The shared wait helper: deadlines are the work's duration on an idle machine, stretched
// while the machine is loaded (WARMPOOL_TEST_SLOWNESS fixes the factor here, so the test
// does not depend on this machine's load).
import t from 'tap';
import { eventually, slowness } from '../src/index.js';

const within = (ms: number) => { const at = Date.now() + ms; return () => Date.now() >= at; };

t.test('eventually stretches its deadline by the machine slowness, and says so when it gives up', async (t) => {
  const saved = process.env.WARMPOOL_TEST_SLOWNESS;
  t.teardown(() => { if (saved === undefined) delete process.env.WARMPOOL_TEST_SLOWNESS; else process.env.WARMPOOL_TEST_SLOWNESS = saved; });

  process.env.WARMPOOL_TEST_SLOWNESS = '4';
  t.equal(slowness(), 4);
  const ready = within(600);
  t.equal(await eventually(() => ready(), { timeoutMs: 300, what: 'slow work' }), true, '600 ms of clock fit a 300 ms deadline at slowness 4');

  process.env.WARMPOOL_TEST_SLOWNESS = '1';
  const later = within(5_000);
  const started = Date.now();
  const err = await eventually(() => later(), { timeoutMs: 300, what: 'never in time' }).then(() => undefined, (e: unknown) => e as Error);
  t.ok(err, 'at slowness 1 the plain deadline holds');
  t.ok(Date.now() - started < 2_000, 'and it gives up near it');
  t.match(err?.message, /eventually\(never in time\) timed out after 300 ms of work \(\d+ ms on the clock; machine slowness up to 1\.0x\)/);

  delete process.env.WARMPOOL_TEST_SLOWNESS;
  const s = slowness();
  t.ok(s >= 1 && s <= 6, `measured from the load average: ${s.toFixed(2)}`);
});
