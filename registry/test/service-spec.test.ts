import t from 'tap';
import { parseServicesFile } from '../src/service-spec.js';
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
