import t from 'tap';
import type { ServiceSpec } from '@warmpool/registry';
import { baseSpec } from './spec-fixture.js';
import { grantHostOptions, type HostFiles } from '../src/host-policy.js';

// Whoever can write the registry bypasses `warmpool apply`'s validation: the agent reads the
// stored JSON as is. Its own checks must hold for any shape, e.g. `ipc: container:ID` (the IPC
// namespace, shared memory included, of another session's container), a bind mode smuggled
// into a target, or fields of the wrong type; each is a refusal naming the field, never a grant
// and never a thrown TypeError.
const base = baseSpec;
const allow = { hostPaths: ['/data/models'], ipcHost: true, secretDirs: ['/etc/warmpool/secrets'], volumes: ['hf*'] };
const files: HostFiles = { realpath: (p) => p, readFile: () => 'v' };
const raw = (extra: Record<string, unknown>): ServiceSpec => ({ ...base, ...extra }) as unknown as ServiceSpec;

t.test('container options straight from the registry are checked like a services file', async (t) => {
  t.match(grantHostOptions(raw({ ipc: 'container:victim' }), allow, files), { ok: false, reason: /^ipc: / }, 'another container\'s IPC namespace');
  t.match(grantHostOptions(raw({ volumes: [{ source: '/data/models/x', target: '/m:Z', readOnly: false }] }), allow, files),
    { ok: false, reason: /^volumes\[0\]\.target: / }, 'a bind mode in the target');
  t.match(grantHostOptions(raw({ volumes: '/:/host' }), allow, files), { ok: false, reason: /^volumes: / }, 'volumes not a list');
  t.match(grantHostOptions(raw({ secretEnv: { T: 5 } }), allow, files), { ok: false, reason: /^secretEnv\.T: / }, 'a secret path not a string');
  t.match(grantHostOptions(raw({ volumes: [{ source: 'hf', target: '/c' }] }), allow, files), { ok: true, grant: { volumes: [{ source: 'hf', target: '/c', readOnly: false }] } }, 'a valid raw volume');
  t.match(grantHostOptions(raw({ ipc: 'host', user: '0' }), allow, files), { ok: true }, 'what the allow-list grants still passes');
});

// A credential header in a warm-up's plain headers is refused by `warmpool apply`; a spec
// written straight into the registry is refused by the agent too, naming the header, and a
// harmless header still passes. The value never appears in the reason.
t.test('warm-up credential headers in plain headers are refused from a raw spec as from a services file', async (t) => {
  const warm = (headers: Record<string, unknown>, secretHeaders?: Record<string, unknown>) =>
    raw({ warmup: [{ method: 'POST', path: '/warm', headers, ...(secretHeaders ? { secretHeaders } : {}) }] });
  const refused = grantHostOptions(warm({ Authorization: 'Bearer sk-live-123' }), allow, files);
  t.match(refused, { ok: false, reason: /^warmup\[0\]\.headers\.Authorization: Authorization carries a credential/ });
  t.notMatch(refused.ok ? '' : refused.reason, 'sk-live-123', 'the value is not in the reason');
  t.match(grantHostOptions(warm({ 'x-api-key': 'k' }), allow, files), { ok: false, reason: /^warmup\[0\]\.headers\.x-api-key: / });
  t.match(grantHostOptions(warm({ 'X-Tenant': 'a' }, { 'x-tenant': '/etc/warmpool/secrets/t' }), allow, files),
    { ok: false, reason: /^warmup\[0\]\.headers\.X-Tenant: X-Tenant is set in secretHeaders too/ }, 'a header given in both');
  t.match(grantHostOptions(warm({ 'content-type': 'application/json' }), allow, files), { ok: true }, 'a plain header passes');
  t.match(grantHostOptions(raw({ warmup: [{ path: '/w', headers: 'Authorization: x' }] }), allow, files), { ok: false, reason: /^warmup\[0\]\.headers: / }, 'headers not an object');
});
