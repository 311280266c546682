import t from 'tap';
import type { ServiceSpec } from '@warmpool/registry';
import { SIDECAR_ENV as E } from '@warmpool/sidecar/protocol';
import { baseSpec } from './spec-fixture.js';
import { sidecarContainerSpec, type PodInput } from '../src/container-spec.js';
import { DEFAULT_ALLOW, grantHostOptions, namedVolumeRefusal, volumeNameAllowed, type HostFiles } from '../src/host-policy.js';

// Three gaps a break-it pass found in the host policy, each pinned here on its pure part:
// a warm-up's auth header had to be stored in the registry in plaintext; any named volume of
// a host could be mounted by whoever writes the registry; a host path was mounted as written,
// so a symlink swapped in after the check was followed by the engine.
const base = baseSpec;
const allow = { ...DEFAULT_ALLOW, hostPaths: ['/data/models'] };
const KEY = 'sk-SECRETAPIKEY';
const files: HostFiles = {
  realpath: (p) => ({
    '/data/models': '/data/models', '/data/models/current': '/data/models/v2', '/etc/warmpool/secrets/api_key': '/etc/warmpool/secrets/api_key',
    '/etc/warmpool/secrets/two_lines': '/etc/warmpool/secrets/two_lines', '/data/models/odd': '/data/models/a:Z',
  } as Record<string, string>)[p],
  readFile: (p) => {
    if (p === '/etc/warmpool/secrets/api_key') return `${KEY}\n`;
    if (p === '/etc/warmpool/secrets/two_lines') return `${KEY}\nX-Injected: 1\n`;
    throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
  },
};
const warm = (secretHeaders: unknown, headers?: Record<string, string>): ServiceSpec => ({
  ...base,
  warmup: [
    { method: 'GET', path: '/v1/models', timeoutSec: 10, expectStatus: 200 },
    { method: 'POST', path: '/v1/completions', body: { max_tokens: 1 }, timeoutSec: 60, expectStatus: 200, ...(headers ? { headers } : {}), secretHeaders },
  ],
} as ServiceSpec);
const pod = (spec: ServiceSpec): PodInput => ({
  cluster: 'c', hostId: 'h', instanceId: 'i', slot: 0, spec, publishIp: '127.0.0.1', sidecarImage: 'warmpool/sidecar',
  sidecarPort: 9000, runDir: '/run/warmpool', instanceKey: 'k',
});

t.test('warm-up secretHeaders: read from the host\'s secret files, handed only to the sidecar', async (t) => {
  const spec = warm({ Authorization: { file: '/etc/warmpool/secrets/api_key', prefix: 'Bearer ' }, 'X-Key': '/etc/warmpool/secrets/api_key' });
  const granted = grantHostOptions(spec, allow, files);
  t.same(granted, { ok: true, grant: { volumes: [], secretEnv: {}, warmupHeaders: [{}, { Authorization: `Bearer ${KEY}`, 'X-Key': KEY }] } });
  if (!granted.ok) return;
  const steps = JSON.parse(sidecarContainerSpec({ ...pod(spec), grant: granted.grant }).env[E.warmup]!) as { headers: Record<string, string> }[];
  t.same(steps[0]!.headers, {}, 'the first request has none');
  t.same(steps[1]!.headers, { 'content-type': 'application/json', Authorization: `Bearer ${KEY}`, 'X-Key': KEY }, 'the second carries both');
  t.notMatch(JSON.stringify(sidecarContainerSpec(pod(spec))), KEY, 'without the grant (the spec alone) no value');
  t.notMatch(JSON.stringify(spec), KEY, 'the spec (what the registry stores) holds paths only');
  t.same(grantHostOptions(base, allow, files), { ok: true, grant: { volumes: [], secretEnv: {} } }, 'no warm-up: no warmupHeaders');
});

t.test('warm-up secretHeaders: a refusal names the field and the file, never the value', async (t) => {
  const missing = grantHostOptions(warm({ Authorization: { file: '/etc/warmpool/secrets/nope', prefix: 'Bearer ' } }), allow, files);
  t.same(missing, { ok: false, reason: 'warmup[1].secretHeaders.Authorization: cannot read the secret file /etc/warmpool/secrets/nope on this host (ENOENT)' });
  t.match(grantHostOptions(warm({ Authorization: '/etc/shadow' }), allow, files),
    { ok: false, reason: /^warmup\[1\]\.secretHeaders\.Authorization: \/etc\/shadow is not under a secret directory/ }, 'any host file is not a secret');
  const injected = grantHostOptions(warm({ Authorization: '/etc/warmpool/secrets/two_lines' }), allow, files);
  t.match(injected, { ok: false, reason: /^warmup\[1\]\.secretHeaders\.Authorization: the secret file \/etc\/warmpool\/secrets\/two_lines holds a line break/ });
  t.notMatch(JSON.stringify(injected), KEY);
  // Straight from the registry (no `warmpool apply`): the same schema, a refusal not a TypeError.
  t.match(grantHostOptions(warm({ Authorization: 5 }), allow, files), { ok: false, reason: /^warmup\[1\]\.secretHeaders\.Authorization/ });
  t.match(grantHostOptions(warm({ 'Bad Header': '/etc/warmpool/secrets/api_key' }), allow, files), { ok: false, reason: /^warmup\[1\]\.secretHeaders/ });
  t.match(grantHostOptions({ ...base, warmup: 'x' } as unknown as ServiceSpec, allow, files), { ok: false, reason: /^warmup: / });
});

t.test('named volumes only when the agent\'s allow.volumes names them (none by default)', async (t) => {
  const vol = (source: string): ServiceSpec => ({ ...base, volumes: [{ source: '/data/models', target: '/m', readOnly: true }, { source, target: '/v', readOnly: false }] });
  t.same(grantHostOptions(vol('models'), DEFAULT_ALLOW, files), { ok: false, reason: 'volumes[0]: host path /data/models is not allowed on this host (agent allow.hostPaths: none)' });
  t.same(grantHostOptions(vol('docker-data'), allow, files),
    { ok: false, reason: 'volumes[1]: named volume docker-data is not allowed on this host (agent allow.volumes: none)' }, 'secure by default');
  t.match(grantHostOptions(vol('hf-cache'), { ...allow, volumes: ['models', 'hf-*'] }, files), { ok: true }, 'a glob');
  t.match(grantHostOptions(vol('models'), { ...allow, volumes: ['models', 'hf-*'] }, files), { ok: true }, 'a name');
  t.same(grantHostOptions(vol('models2'), { ...allow, volumes: ['models', 'hf-*'] }, files),
    { ok: false, reason: 'volumes[1]: named volume models2 is not allowed on this host (agent allow.volumes: models, hf-*)' });
  t.ok(volumeNameAllowed('a.b', ['a?b']), '? is one character');
  t.notOk(volumeNameAllowed('axb', ['a.b']), 'a dot is a dot');
  t.notOk(volumeNameAllowed('xmodels', ['models']), 'whole names only');
});

t.test('an existing named volume binding the secret directory is refused like a bind mount of it', async (t) => {
  const bind = (device: string): { driver: string; options: Record<string, string> } => ({ driver: 'local', options: { type: 'none', o: 'bind', device } });
  const wide = { ...allow, hostPaths: ['/etc/warmpool', '/data/models'] };
  t.equal(namedVolumeRefusal(0, 'sec', bind('/etc/warmpool'), wide, files),
    'volumes[0]: named volume sec binds host path /etc/warmpool, which holds the secret directory /etc/warmpool/secrets of this host');
  t.match(namedVolumeRefusal(1, 'sec', bind('/etc/warmpool/secrets'), wide, files), /^volumes\[1\]: .*holds the secret directory/);
  t.equal(namedVolumeRefusal(0, 'm', bind('/data/models'), wide, files), undefined, 'another allowed path');
});

t.test('a host path is mounted as the real path the check approved, not as written', async (t) => {
  const granted = grantHostOptions({ ...base, volumes: [{ source: '/data/models/current', target: '/models', readOnly: true },
    { source: '/data/models/new/dir', target: '/cache', readOnly: false }] }, allow, files);
  t.same(granted, { ok: true, grant: { secretEnv: {}, volumes: [
    { source: '/data/models/v2', target: '/models', readOnly: true },
    { source: '/data/models/new/dir', target: '/cache', readOnly: false },
  ] } }, 'a symlink swapped after the check cannot redirect the mount');
  t.same(grantHostOptions({ ...base, volumes: [{ source: '/data/models/odd', target: '/m', readOnly: false }] }, allow, files),
    { ok: false, reason: 'volumes[0]: host path /data/models/odd resolves to /data/models/a:Z, which holds \':\'' }, 'no bind mode through a link target');
});
