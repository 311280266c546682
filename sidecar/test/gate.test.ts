import t from 'tap';
import { instanceKey, sessionCredential } from '@warmpool/registry/credentials';
import { SessionGate } from '../src/gate.js';

const key = instanceKey('cluster-secret', 'inst-1');

t.test('no credential, a forged one, or one for another instance is refused', async (t) => {
  const gate = new SessionGate(key);
  t.same(gate.check(undefined), { ok: false, reason: 'missing-credential' });
  t.same(gate.check(''), { ok: false, reason: 'missing-credential' });
  t.same(gate.check('sess.forged'), { ok: false, reason: 'invalid-credential' });
  t.same(gate.check(sessionCredential(instanceKey('cluster-secret', 'inst-2'), 'sess')), { ok: false, reason: 'invalid-credential' });
  t.same(gate.check(sessionCredential(instanceKey('other-secret', 'inst-1'), 'sess')), { ok: false, reason: 'invalid-credential' });
  t.same(gate.check([sessionCredential(key, 'a'), sessionCredential(key, 'a')]), { ok: false, reason: 'invalid-credential' }, 'a repeated header is refused');
  t.equal(gate.pinnedSession, undefined, 'nothing pinned by refused requests');
});

t.test('the first valid session is pinned; any other session is refused afterwards', async (t) => {
  const gate = new SessionGate(key);
  t.same(gate.check(sessionCredential(key, 'sess-a')), { ok: true, sessionId: 'sess-a' });
  t.equal(gate.pinnedSession, 'sess-a');
  t.same(gate.check(sessionCredential(key, 'sess-a')), { ok: true, sessionId: 'sess-a' }, 'the same session again');
  t.same(gate.check(sessionCredential(key, 'sess-b')), { ok: false, reason: 'other-session' }, 'a second valid session');
});
