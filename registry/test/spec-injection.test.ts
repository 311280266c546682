import t from 'tap';
import { parseServicesFile } from '../src/service-spec.js';

// Values that the schema accepted but that are not what they look like further down: a
// volume target or source with `:` adds a mode to the engine's `SOURCE:TARGET:MODE` bind
// (`:Z` relabels the host directory, `:rshared` changes propagation); a probe or warm-up path
// with a space or a line break is refused by the sidecar's HTTP client on every attempt, so
// the instance only fails at its boot timeout; INSTANCE_ID and PORT in env are silently
// replaced by Warmpool's own values.
const problems = (extra: object): string[] => {
  const r = parseServicesFile({ services: [{ name: 'vllm', image: 'vllm/vllm-openai', ...extra }] });
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

t.test('volume parts with ":" are refused, naming the part', async (t) => {
  t.match(problems({ volumes: [{ source: '/data/models', target: '/m:Z' }] }), [/^services\[0\]\.volumes\[0\]\.target: .*:/]);
  t.match(problems({ volumes: [{ source: '/data/models', target: '/m:rshared' }] }), [/^services\[0\]\.volumes\[0\]\.target: /]);
  t.match(problems({ volumes: [{ source: '/data/a:b', target: '/m' }] }), [/^services\[0\]\.volumes\[0\]\.source: /]);
  t.same(problems({ volumes: ['/data/models:/models:ro', 'hf:/root/.cache'] }), [], 'the ordinary forms still pass');
});

t.test('probe and warm-up paths without spaces or control characters', async (t) => {
  t.match(problems({ readiness: { path: '/he alth' } }), [/^services\[0\]\.readiness\.path: .*space/]);
  t.match(problems({ liveness: { path: '/x\ty' } }), [/^services\[0\]\.liveness\.path: /]);
  t.match(problems({ warmup: [{ path: '/ok\r\nHost: evil' }] }), [/^services\[0\]\.warmup\[0\]\.path: /]);
  t.same(problems({ readiness: { path: '/v1/models?x=%20y' }, warmup: [{ path: '//x/api/generate' }] }), [], 'percent-encoded and odd-but-valid paths pass');
});

t.test('env names Warmpool sets itself are refused, not silently replaced', async (t) => {
  t.match(problems({ env: { INSTANCE_ID: 'a', PORT: '1' } }).sort(), [/^services\[0\]\.env\.INSTANCE_ID: .*Warmpool/, /^services\[0\]\.env\.PORT: .*containerPort/]);
  t.match(problems({ secretEnv: { PORT: '/etc/warmpool/secrets/p' } }), [/^services\[0\]\.secretEnv\.PORT: /]);
  t.same(problems({ env: { HOST: '0.0.0.0', HF_HOME: '/x' } }), [], 'HOST is a default the service may change');
});
