import t from 'tap';
import { MAX_WARM, parseServiceSpec, parseServicesFile } from '../src/service-spec.js';
import { verifyCredential, sessionCredential, instanceKey, newSessionId, isValidSessionId } from '../src/credentials.js';
import { Keys } from '../src/keys.js';

t.test('services file: defaults and field-path errors', async (t) => {
  const ok = parseServicesFile({ services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3 }] });
  t.ok(ok.ok);
  if (ok.ok) {
    t.equal(ok.services[0]!.readiness.path, '/health');
    t.equal(ok.services[0]!.session.idleTimeoutSec, 600);
  }
  const bad = parseServicesFile({ services: [{ name: 'Chat Bot', image: '', warm: -1, readiness: { path: 'health' }, extra: 1 }] });
  t.notOk(bad.ok);
  if (!bad.ok) {
    const paths = bad.problems.map((p) => p.path);
    t.ok(paths.includes('services[0].name'), 'names the bad name');
    t.ok(paths.includes('services[0].image'));
    t.ok(paths.includes('services[0].warm'));
    t.ok(paths.includes('services[0].readiness.path'));
    t.ok(bad.problems.some((p) => /extra/.test(p.message)), 'unknown field reported');
  }
  const dup = parseServicesFile({ services: [{ name: 'a', image: 'x' }, { name: 'a', image: 'y' }] });
  t.notOk(dup.ok);
  if (!dup.ok) t.equal(dup.problems[0]!.path, 'services[1].name');
});

t.test('names that collide with infrastructure are refused with the field path and reason (issue 13)', async (t) => {
  for (const n of ['warmpool-router', 'consul', 'warmpool', 'warmpool-anything', 'chatbot-sidecar-proxy']) {
    const r = parseServicesFile({ services: [{ name: 'fine', image: 'x' }, { name: n, image: 'x' }] });
    t.notOk(r.ok, `${n} refused`);
    if (!r.ok) {
      t.equal(r.problems[0]!.path, 'services[1].name', `${n}: names the field`);
      t.match(r.problems[0]!.message, /is reserved: /, `${n}: says why`);
    }
  }
  for (const n of ['consul-chat', 'my-warmpool-router', 'sidecar-proxy', 'router', 'chatbot']) {
    t.ok(parseServicesFile({ services: [{ name: n, image: 'x' }] }).ok, `${n} accepted`);
  }
});

t.test('credentials: only the right instance key and session verify', async (t) => {
  const key = instanceKey('secret', 'i1');
  const sid = newSessionId();
  t.ok(isValidSessionId(sid));
  t.notOk(isValidSessionId('../../etc'));
  const cred = sessionCredential(key, sid);
  t.equal(verifyCredential(key, cred), sid);
  t.equal(verifyCredential(instanceKey('secret', 'i2'), cred), undefined, 'other instance refuses');
  t.equal(verifyCredential(key, cred.slice(0, -1) + (cred.endsWith('A') ? 'B' : 'A')), undefined, 'tampered');
  t.equal(verifyCredential(key, `${newSessionId()}.${cred.split('.')[1]}`), undefined, 'mac of another session');
  t.equal(verifyCredential(key, undefined), undefined);
  t.equal(verifyCredential(key, 'x'.repeat(10_000)), undefined);
});

t.test('keys: layout parse round trip and prefix validation', async (t) => {
  const k = new Keys('/warmpool/');
  t.same(k.parse(k.instance('s', 'i')), { kind: 'instances', parts: ['s', 'i'] });
  t.same(k.parse(k.session('x')), { kind: 'sessions', parts: ['x'] });
  t.equal(k.parse('/warmpool/instances/s'), undefined);
  t.equal(k.parse('/other/x'), undefined);
  t.throws(() => new Keys('warmpool'));
});

t.test('services file: liveness, probe timeouts and warm-up (issue 16)', async (t) => {
  const plain = parseServicesFile({ services: [{ name: 'a', image: 'x' }] });
  t.ok(plain.ok);
  if (plain.ok) {
    const s = plain.services[0]!;
    t.equal(s.liveness, undefined, 'no liveness unless asked (the readiness probe serves, as before)');
    t.equal(s.warmup, undefined);
    t.equal(s.readiness.timeoutMs, undefined, 'no new default in stored specs (their hash stays)');
  }
  const full = parseServicesFile({ services: [{
    name: 'nim', image: 'x', readiness: { path: '/v1/health/ready', timeoutMs: 5000 }, liveness: { path: '/v1/health/live' },
    warmup: [{ path: '/v1/chat/completions', body: { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }, timeoutSec: 120 }],
  }] });
  t.ok(full.ok);
  if (full.ok) {
    const s = full.services[0]!;
    t.same(s.liveness, { path: '/v1/health/live', expectStatus: 200, intervalMs: 5000, timeoutMs: 5000, failureThreshold: 3 });
    t.match(s.warmup, [{ method: 'POST', path: '/v1/chat/completions', timeoutSec: 120, expectStatus: 200 }]);
  }
  const bad = parseServicesFile({ services: [{
    name: 'a', image: 'x', liveness: { path: 'live', timeoutMs: 0 },
    warmup: [{ method: 'DELETE', path: '/x', headers: { 'bad header': 'v' }, timeoutSec: 0 }],
  }] });
  t.notOk(bad.ok);
  if (!bad.ok) {
    const paths = bad.problems.map((p) => p.path);
    for (const p of ['services[0].liveness.path', 'services[0].liveness.timeoutMs', 'services[0].warmup[0].method', 'services[0].warmup[0].timeoutSec']) {
      t.ok(paths.includes(p), `names ${p}`);
    }
    t.ok(paths.some((p) => p.startsWith('services[0].warmup[0].headers')), `names the bad header: ${paths.join(', ')}`);
  }
});

t.test('warm-up credentials come from secretHeaders (files on the host), never from plain headers', async (t) => {
  const spec = (w: Record<string, unknown>): ReturnType<typeof parseServiceSpec> => parseServiceSpec({ name: 'v', image: 'x', warmup: [{ path: '/v1/models', ...w }] });
  const ok = spec({ headers: { 'X-Trace': '1' }, secretHeaders: { Authorization: { file: '/etc/warmpool/secrets/api_key', prefix: 'Bearer ' }, 'X-Key': '/etc/warmpool/secrets/k' } });
  t.ok(ok.ok, 'a file with a prefix, or a file alone');
  if (ok.ok) t.same(ok.spec.warmup?.[0]?.secretHeaders, { Authorization: { file: '/etc/warmpool/secrets/api_key', prefix: 'Bearer ' }, 'X-Key': '/etc/warmpool/secrets/k' }, 'stored: paths only');
  const paths = (r: ReturnType<typeof parseServiceSpec>): string[] => (r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`));
  for (const h of ['Authorization', 'proxy-authorization', 'Cookie', 'X-Api-Key', 'api-key']) {
    t.match(paths(spec({ headers: { [h]: 'Bearer sk-123' } })), [new RegExp(`^warmup\\[0\\]\\.headers\\.${h}: .*carries a credential.*secretHeaders`)], `${h} refused in plain headers`);
  }
  t.match(paths(spec({ headers: { 'x-key': 'v' }, secretHeaders: { 'X-Key': '/etc/warmpool/secrets/k' } })), [/^warmup\[0\]\.headers\.x-key: .*secretHeaders too/], 'one source per header');
  t.match(paths(spec({ secretHeaders: { Authorization: 'relative/path' } })), [/^warmup\[0\]\.secretHeaders\.Authorization/]);
  t.match(paths(spec({ secretHeaders: { Authorization: { file: '/etc/warmpool/secrets/k', prefix: 'Bearer\r\nX: 1' } } })), [/^warmup\[0\]\.secretHeaders\.Authorization\.prefix/]);
  t.match(paths(spec({ secretHeaders: { Authorization: { file: '/etc/warmpool/secrets/k', value: 'sk-1' } } })), [/^warmup\[0\]\.secretHeaders\.Authorization/], 'no inline value');
});

t.test('warm is sized for fleets: 20,000 accepted, above MAX_WARM refused with the field named', async (t) => {
  const ok = parseServiceSpec({ name: 'big', image: 'x', warm: 20_000 });
  t.ok(ok.ok, 'warm 20,000 (a 20,000-instance fleet) is valid');
  const bad = parseServiceSpec({ name: 'big', image: 'x', warm: MAX_WARM + 1 });
  t.notOk(bad.ok);
  if (!bad.ok) t.equal(bad.problems[0]?.path, 'warm');
});

t.test('warm of the wrong type says both forms it may take', async (t) => {
  for (const warm of ['three', null, true]) {
    const r = parseServiceSpec({ name: 'a', image: 'x', warm });
    t.same(r.ok ? null : r.problems, [{ path: 'warm', message: 'a number of instances (e.g. 3) or a policy object (e.g. { min: 0, max: 8, target: 0.99 })' }], JSON.stringify(warm));
  }
  const half = parseServiceSpec({ name: 'a', image: 'x', warm: 2.5 });
  t.same(half.ok ? null : half.problems, [{ path: 'warm', message: 'a whole number of instances' }]);
});

t.test('a number far out of range gets one message, with the field\'s own bound', async (t) => {
  const lifetime = parseServiceSpec({ name: 'a', image: 'x', session: { maxLifetimeSec: 1e20 } });
  t.same(lifetime.ok ? null : lifetime.problems, [{ path: 'session.maxLifetimeSec', message: 'Too big: expected number to be <=604800' }]);
  const max = parseServiceSpec({ name: 'a', image: 'x', warm: { min: 0, max: 1e20, target: 0.9 } });
  t.same(max.ok ? null : max.problems, [{ path: 'warm.max', message: 'Too big: expected number to be <=100000' }], 'inside a warm policy too');
});

t.test('resources.memoryMb: up to 16 TiB; above is refused with the field named', async (t) => {
  t.ok(parseServiceSpec({ name: 'big', image: 'x', resources: { memoryMb: 2_097_152 } }).ok, '2 TiB');
  const bad = parseServiceSpec({ name: 'big', image: 'x', resources: { memoryMb: 1e15 } });
  t.notOk(bad.ok);
  if (!bad.ok) t.equal(bad.problems[0]?.path, 'resources.memoryMb');
});

t.test('services file: pullPolicy and pullTimeoutSec', async (t) => {
  const ok = parseServicesFile({ services: [{ name: 'a', image: 'x' }, { name: 'b', image: 'y', pullPolicy: 'Always', pullTimeoutSec: 7200 }] });
  t.ok(ok.ok);
  if (ok.ok) {
    t.match(ok.services[0], { pullPolicy: 'IfNotPresent', pullTimeoutSec: 1800 }, 'defaults');
    t.match(ok.services[1], { pullPolicy: 'Always', pullTimeoutSec: 7200 });
  }
  const bad = parseServicesFile({ services: [{ name: 'a', image: 'x', pullPolicy: 'sometimes', pullTimeoutSec: 0 }] });
  t.notOk(bad.ok);
  if (!bad.ok) {
    t.ok(bad.problems.some((p) => p.path === 'services[0].pullPolicy'), 'names the bad policy');
    t.ok(bad.problems.some((p) => p.path === 'services[0].pullTimeoutSec'), 'names the bad timeout');
  }
});
