// The session API of design.md through app.inject(): create, read, end; idempotency;
// errors as {"error":{"code","message"}} with the documented statuses.
import t from 'tap';
import type { InjectOptions } from 'fastify';
import { isValidSessionId } from '@warmpool/registry';
import { harness, testSpec } from './fixtures.js';

t.test('POST /v1/sessions claims a ready instance; GET reads it; DELETE ends it (410 after)', async (t) => {
  const h = await harness({ ready: 2 });
  t.teardown(() => h.close());
  const res = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  t.equal(res.statusCode, 201);
  const body = res.json();
  t.ok(isValidSessionId(body.sessionId), 'session id is 128-bit base64url');
  t.equal(body.service, 'chatbot');
  t.ok(h.instances.some((i) => i.id === body.instanceId), 'an instance we registered');
  t.ok(Date.parse(body.expiresAt) > Date.now(), 'expiresAt in the future (ISO 8601)');
  t.equal(res.headers['x-warmpool-session'], body.sessionId);
  t.equal(res.headers.location, `/v1/sessions/${body.sessionId}`);

  const get = await h.app.inject({ url: `/v1/sessions/${body.sessionId}` });
  t.equal(get.statusCode, 200);
  t.match(get.json(), { sessionId: body.sessionId, instanceId: body.instanceId, state: 'active' });

  const del = await h.app.inject({ method: 'DELETE', url: `/v1/sessions/${body.sessionId}` });
  t.equal(del.statusCode, 204);
  t.equal(del.body, '');
  const gone = await h.app.inject({ url: `/v1/sessions/${body.sessionId}` });
  t.equal(gone.statusCode, 410);
  t.equal(gone.json().error.code, 'WARMPOOL_SESSION_ENDED');
  const again = await h.app.inject({ method: 'DELETE', url: `/v1/sessions/${body.sessionId}` });
  t.equal(again.statusCode, 410, 'ending twice: 410');
});

t.test('two sessions never share an instance', async (t) => {
  const h = await harness({ ready: 3 });
  t.teardown(() => h.close());
  const rs = await Promise.all([1, 2, 3].map(() => h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } })));
  t.same(rs.map((r) => r.statusCode), [201, 201, 201]);
  const ids = new Set(rs.map((r) => r.json().instanceId));
  t.equal(ids.size, 3, 'three distinct instances');
  const fourth = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0', payload: { service: 'chatbot' } });
  t.equal(fourth.statusCode, 503, 'pool exhausted');
  t.equal(fourth.json().error.code, 'WARMPOOL_NO_READY_INSTANCE');
  t.ok(Number(fourth.headers['retry-after']) >= 1, 'Retry-After given');
  t.notMatch(fourth.json().error.message, /no host/, 'a host takes instances: nothing more to say');
});

t.test('a 503 says when no host is taking instances (no agent, every host draining)', async (t) => {
  const h = await harness({ ready: 0 });
  t.teardown(() => h.close());
  await h.agent.setDrain('host-a', true);
  const cache = await h.registry.cache();
  for (let i = 0; i < 200 && !cache.drains.has('host-a'); i++) await new Promise((r) => setTimeout(r, 10));
  const r = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0', payload: { service: 'chatbot' } });
  t.equal(r.statusCode, 503);
  t.match(r.json().error.message, /no ready instance of "chatbot", and no host is taking instances \(no agent running, or every host draining\); retry in about \d+ s/);
});

t.test('a 503 says when no host has room for another instance (here maxPerHost), not just "retry"', async (t) => {
  const h = await harness({ ready: 1, services: [testSpec({ maxPerHost: 1 })] });
  t.teardown(() => h.close());
  const first = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  t.equal(first.statusCode, 201);
  const cache = await h.registry.cache();
  for (let i = 0; i < 200 && cache.ready.count('chatbot') > 0; i++) await new Promise((r) => setTimeout(r, 10));
  const r = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=0', payload: { service: 'chatbot' } });
  t.equal(r.statusCode, 503);
  t.match(r.json().error.message, /no ready instance of "chatbot", and no host has room for another one now \(see warmpool status\); retry in about \d+ s/);
});

t.test('Idempotency-Key: a retry gets the same session, even through another router', async (t) => {
  const h = await harness({ ready: 3 });
  t.teardown(() => h.close());
  const first = await h.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'idempotency-key': 'retry-me-1' }, payload: { service: 'chatbot' } });
  t.equal(first.statusCode, 201);
  const second = await h.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'idempotency-key': 'retry-me-1' }, payload: { service: 'chatbot' } });
  t.equal(second.statusCode, 201);
  t.equal(second.json().sessionId, first.json().sessionId, 'same session');
  t.equal(second.headers['idempotent-replayed'], 'true');

  // A second router on its own Registry over the same store.
  const { Registry } = await import('@warmpool/registry');
  const { buildRouter } = await import('../src/index.js');
  const otherRegistry = new Registry(h.store);
  const other = buildRouter({ registry: otherRegistry });
  t.teardown(async () => { await other.close(); await otherRegistry.close(); });
  const third = await other.inject({ method: 'POST', url: '/v1/sessions', headers: { 'idempotency-key': 'retry-me-1' }, payload: { service: 'chatbot' } });
  t.equal(third.statusCode, 201);
  t.equal(third.json().sessionId, first.json().sessionId, 'same session through another router');
  t.equal(h.registry.store === otherRegistry.store, true);
  const fresh = await h.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'idempotency-key': 'another' }, payload: { service: 'chatbot' } });
  t.not(fresh.json().sessionId, first.json().sessionId, 'a different key is a different session');
});

t.test('client errors are 4xx with a stable code', async (t) => {
  const h = await harness({ ready: 1 });
  t.teardown(() => h.close());
  const cases: [string, InjectOptions, number, string][] = [
    ['malformed id', { url: '/v1/sessions/not-a-session' }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['id too long', { url: `/v1/sessions/${'A'.repeat(23)}` }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['id with dot', { url: `/v1/sessions/${'A'.repeat(21)}.` }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['encoded slash in id', { url: `/v1/sessions/${'A'.repeat(10)}%2F${'A'.repeat(9)}` }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['unknown id', { url: `/v1/sessions/${'A'.repeat(22)}` }, 404, 'WARMPOOL_UNKNOWN_SESSION'],
    ['delete unknown', { method: 'DELETE', url: `/v1/sessions/${'B'.repeat(22)}` }, 404, 'WARMPOOL_UNKNOWN_SESSION'],
    ['unknown service', { method: 'POST', url: '/v1/sessions', payload: { service: 'nope' } }, 404, 'WARMPOOL_UNKNOWN_SERVICE'],
    ['invalid service name', { method: 'POST', url: '/v1/sessions', payload: { service: '../etc' } }, 400, 'WARMPOOL_INVALID_SERVICE'],
    ['service not a string', { method: 'POST', url: '/v1/sessions', payload: { service: 42 } }, 400, 'WARMPOOL_INVALID_SERVICE'],
    ['no service', { method: 'POST', url: '/v1/sessions', payload: {} }, 400, 'WARMPOOL_INVALID_SERVICE'],
    ['bad JSON', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"service":' }, 400, 'WARMPOOL_BAD_JSON'],
    ['a __proto__ key', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"__proto__":{"service":"chatbot"}}' }, 400, 'WARMPOOL_BAD_JSON'],
    ['a constructor.prototype key', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"constructor":{"prototype":{"service":"chatbot"}}}' }, 400, 'WARMPOOL_BAD_JSON'],
    ['JSON array', { method: 'POST', url: '/v1/sessions', payload: [1, 2] }, 400, 'WARMPOOL_BAD_REQUEST'],
    ['JSON null', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: 'null' }, 400, 'WARMPOOL_BAD_REQUEST'],
    ['not JSON', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/xml' }, payload: '<a/>' }, 415, 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE'],
    // curl -d '{"service":"chatbot"}' without -H sends valid JSON as form data; text/plain likewise.
    ['JSON sent as text/plain', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'text/plain' }, payload: '{"service":"chatbot"}' }, 415, 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE'],
    ['JSON sent as a form', { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '{"service":"chatbot"}' }, 415, 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE'],
    ['oversized JSON body', { method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot', pad: 'x'.repeat(20_000) } }, 413, 'WARMPOOL_BODY_TOO_LARGE'],
    ['bad wait', { method: 'POST', url: '/v1/sessions?wait=-1', payload: { service: 'chatbot' } }, 400, 'WARMPOOL_INVALID_WAIT'],
    ['wait not a number', { method: 'POST', url: '/v1/sessions?wait=soon', payload: { service: 'chatbot' } }, 400, 'WARMPOOL_INVALID_WAIT'],
    ['bad idempotency key', { method: 'POST', url: '/v1/sessions', headers: { 'idempotency-key': 'a b' }, payload: { service: 'chatbot' } }, 400, 'WARMPOOL_INVALID_IDEMPOTENCY_KEY'],
    ['no session, no default service', { url: '/some/page' }, 404, 'WARMPOOL_NOT_FOUND'],
    ['malformed session header', { url: '/v1/chat/completions', headers: { 'x-warmpool-session': 'abc' } }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['malformed session cookie', { url: '/', headers: { cookie: 'warmpool_session=../../x' } }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
    ['proxy to unknown session', { url: `/v1/sessions/${'C'.repeat(22)}/proxy/x` }, 404, 'WARMPOOL_UNKNOWN_SESSION'],
    ['proxy with malformed id', { url: '/v1/sessions/x/proxy/y' }, 400, 'WARMPOOL_INVALID_SESSION_ID'],
  ];
  for (const [name, req, status, code] of cases) {
    const res = await h.app.inject(req);
    t.equal(res.statusCode, status, `${name}: ${status}`);
    t.equal(res.json().error?.code, code, `${name}: ${code}`);
    t.type(res.json().error?.message, 'string', `${name}: has a message`);
    if (name.includes('__proto__') || name.includes('constructor')) t.match(res.json().error.message, /"__proto__" or "constructor.prototype" key/, `${name}: names the refused keys`);
    if (code === 'WARMPOOL_UNSUPPORTED_MEDIA_TYPE') t.match(res.json().error.message, /^the body is \S+; send it as Content-Type: application\/json/, `${name}: says what to send`);
  }
});

t.test('a session past its max lifetime is 410 and ended', async (t) => {
  let now = Date.now();
  const h = await harness({ ready: 1, router: { now: () => now } });
  t.teardown(() => h.close());
  const res = await h.app.inject({ method: 'POST', url: '/v1/sessions', payload: { service: 'chatbot' } });
  const id = res.json().sessionId as string;
  now += 9 * 3600 * 1000; // default max lifetime is 8 h
  const get = await h.app.inject({ url: `/v1/sessions/${id}/proxy/hello` });
  t.equal(get.statusCode, 410);
});

t.test('the service field: null is no service (400), even where the router has a default service; waits above the maximum are capped', async (t) => {
  const h = await harness({ ready: 5, router: { config: { defaultService: 'chatbot', wait: { defaultSec: 0, maxSec: 1 } } } });
  t.teardown(() => h.close());
  const nul = await h.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"service":null}' });
  t.equal(nul.statusCode, 400, 'service: null is refused, not taken for the default service');
  t.equal(nul.json().error?.code, 'WARMPOOL_INVALID_SERVICE');
  for (const wait of ['1000000', '99999999999', '123456789012.5']) {
    const r = await h.app.inject({ method: 'POST', url: `/v1/sessions?wait=${wait}`, payload: { service: 'chatbot' } });
    t.not(r.statusCode, 400, `?wait=${wait} is capped at the maximum, not refused (${r.statusCode} ${r.body.slice(0, 120)})`);
    if (r.statusCode === 201) await h.app.inject({ method: 'DELETE', url: `/v1/sessions/${r.json().sessionId as string}` });
  }
  const absurd = await h.app.inject({ method: 'POST', url: `/v1/sessions?wait=${'9'.repeat(65)}`, payload: { service: 'chatbot' } });
  t.equal(absurd.statusCode, 400, 'a wait of 65 digits is refused');
  const bySigns = await h.app.inject({ method: 'POST', url: '/v1/sessions?wait=1e9', payload: { service: 'chatbot' } });
  t.equal(bySigns.json().error?.code, 'WARMPOOL_INVALID_WAIT', 'exponents stay refused');
  const omitted = await h.app.inject({ method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{}' });
  t.equal(omitted.statusCode, 201, 'no service field: the default service');
});
