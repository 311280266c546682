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
