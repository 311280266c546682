// The sidecar's environment: today's variables give today's behaviour; the liveness and
// warm-up variables are optional, and bad values are refused with the variable's name.
import t from 'tap';
import { sidecarConfigFromEnv } from '../src/config.js';

const base = { WARMPOOL_INSTANCE_ID: 'i1', WARMPOOL_INSTANCE_KEY: 'k' };

t.test('defaults: liveness is the readiness probe, no warm-up', async (t) => {
  const c = sidecarConfigFromEnv({ ...base, WARMPOOL_READY_PATH: '/ready', WARMPOOL_PROBE_TIMEOUT_MS: '700', WARMPOOL_FAILURE_THRESHOLD: '4' });
  t.same(c.liveness, { path: '/ready', expectStatus: 200, intervalMs: 1000, timeoutMs: 700, failureThreshold: 4 });
  t.equal(c.warmup, undefined);
});

t.test('liveness and warm-up from the environment', async (t) => {
  const c = sidecarConfigFromEnv({
    ...base, WARMPOOL_LIVE_PATH: '/v1/health/live', WARMPOOL_LIVE_TIMEOUT_MS: '10000', WARMPOOL_LIVE_INTERVAL_MS: '5000',
    WARMPOOL_LIVE_FAILURE_THRESHOLD: '3', WARMPOOL_WARMUP: JSON.stringify([{ path: '/api/generate', body: '{}', timeoutMs: 90000 }]),
  });
  t.same(c.liveness, { path: '/v1/health/live', expectStatus: 200, intervalMs: 5000, timeoutMs: 10_000, failureThreshold: 3 });
  t.same(c.warmup, [{ method: 'POST', path: '/api/generate', body: '{}', headers: {}, timeoutMs: 90_000, expectStatus: 200 }]);
});

t.test('bad values name the variable', async (t) => {
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_LIVE_PATH: 'live' }), /WARMPOOL_LIVE_PATH must start with \//);
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_LIVE_TIMEOUT_MS: '-1' }), /WARMPOOL_LIVE_TIMEOUT_MS must be an integer/);
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_WARMUP: '{' }), /WARMPOOL_WARMUP must be a JSON array/);
  // Its headers may hold secret values (secretHeaders): a parse error never quotes the text.
  let message = '';
  try { sidecarConfigFromEnv({ ...base, WARMPOOL_WARMUP: '[{"headers":{"Authorization":"Bearer sk-SECRET"}' }); } catch (err) { message = (err as Error).message; }
  t.match(message, /WARMPOOL_WARMUP must be a JSON array/);
  t.notMatch(message, 'sk-SECRET', 'the text is not quoted');
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_WARMUP: '[{"path":"x"}]' }), /WARMPOOL_WARMUP\[0\]\.path must start with \//);
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_WARMUP: '[{"path":"/x","headers":{"a":"b\\r\\nc: d"}}]' }), /WARMPOOL_WARMUP\[0\]\.headers\.a/);
  t.throws(() => sidecarConfigFromEnv({ ...base, WARMPOOL_WARMUP: '[{"path":"/x","expectStatus":42}]' }), /expectStatus/);
});
