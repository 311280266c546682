import t from 'tap';
import { baseSpec } from './spec-fixture.js';
import { grantHostOptions, isUnder, namedVolumeRefusal, type HostFiles } from '../src/host-policy.js';

const base = baseSpec;
const allow = { hostPaths: ['/data/models'], ipcHost: false, secretDirs: ['/etc/warmpool/secrets'], volumes: ['hf*'] };
const SECRET = 'hf_SUPERSECRETVALUE';
/** A host with one secret file and a symlink under the allowed prefix that points at /. */
const files: HostFiles = {
  realpath: (p) => ({ '/data/models/escape': '/', '/data/models': '/data/models', '/etc/warmpool/secrets/hf_token': '/etc/warmpool/secrets/hf_token' } as Record<string, string>)[p],
  readFile: (p) => {
    if (p === '/etc/warmpool/secrets/hf_token') return `${SECRET}\n`;
    throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
  },
};

t.test('path prefixes compare segments', async (t) => {
  t.ok(isUnder('/data/models', '/data/models'));
  t.ok(isUnder('/data/models/llama', '/data/models/'));
  t.notOk(isUnder('/data/models2', '/data/models'));
  t.notOk(isUnder('/data', '/data/models'));
});

t.test('host paths only under the agent\'s allowed prefixes; named volumes matching allow.volumes', async (t) => {
  const ok = grantHostOptions({ ...base, volumes: [{ source: '/data/models/llama', target: '/models', readOnly: true }, { source: 'hf-cache', target: '/root/.cache/huggingface', readOnly: false }] }, allow, files);
  t.ok(ok.ok);
  const root = grantHostOptions({ ...base, volumes: [{ source: 'hf-xy', target: '/x', readOnly: false }, { source: '/', target: '/host', readOnly: false }] }, allow, files);
  t.same(root, { ok: false, reason: 'volumes[1]: host path / is not allowed on this host (agent allow.hostPaths: /data/models)' });
  const link = grantHostOptions({ ...base, volumes: [{ source: '/data/models/escape', target: '/host', readOnly: false }] }, allow, files);
  t.match(link, { ok: false, reason: /volumes\[0\]: host path \/data\/models\/escape is not allowed/ }, 'a symlink out of the prefix is refused');
  t.match(grantHostOptions({ ...base, volumes: [{ source: '/data/models', target: '/m', readOnly: false }] }, { ...allow, hostPaths: [] }, files),
    { ok: false, reason: /allow\.hostPaths: none/ }, 'no prefixes by default');
});

t.test('ipc: host only where the agent allows it', async (t) => {
  t.same(grantHostOptions({ ...base, ipc: 'host' }, allow, files), { ok: false, reason: 'ipc: host is not allowed on this host (agent allow.ipcHost is false)' });
  t.ok(grantHostOptions({ ...base, ipc: 'host' }, { ...allow, ipcHost: true }, files).ok);
  t.ok(grantHostOptions({ ...base, ipc: 'shareable' }, allow, files).ok);
});

t.test('secret files: read at creation, trailing newline dropped, a missing file named, the value never in a reason', async (t) => {
  const ok = grantHostOptions({ ...base, secretEnv: { HF_TOKEN: '/etc/warmpool/secrets/hf_token' } }, allow, files);
  t.same(ok, { ok: true, grant: { volumes: [], secretEnv: { HF_TOKEN: SECRET } } });
  const missing = grantHostOptions({ ...base, secretEnv: { HF_TOKEN: '/etc/warmpool/secrets/hf_token', NGC_API_KEY: '/etc/warmpool/secrets/ngc' } }, allow, files);
  t.same(missing, { ok: false, reason: 'secretEnv.NGC_API_KEY: cannot read the secret file /etc/warmpool/secrets/ngc on this host (ENOENT)' });
  t.notMatch(JSON.stringify(missing), SECRET);
  const outside = grantHostOptions({ ...base, secretEnv: { X: '/etc/shadow' } }, allow, files);
  t.match(outside, { ok: false, reason: /secretEnv\.X: \/etc\/shadow is not under a secret directory/ }, 'any host file is not a secret');
});

t.test('existing named volumes: binds of host paths pass allow.hostPaths, other devices and drivers are refused', async (t) => {
  const bind = (device: string) => ({ driver: 'local', options: { type: 'none', o: 'bind', device } });
  t.equal(namedVolumeRefusal(0, 'hf', { driver: 'local', options: {} }, allow, files), undefined, 'a plain local volume');
  t.equal(namedVolumeRefusal(0, 'm', bind('/data/models/llama'), allow, files), undefined, 'a bind under the prefix');
  t.equal(namedVolumeRefusal(2, 'root', bind('/'), allow, files),
    'volumes[2]: named volume root binds host path /, which is not allowed on this host (agent allow.hostPaths: /data/models)');
  t.match(namedVolumeRefusal(0, 'esc', bind('/data/models/escape'), allow, files), /binds host path \/data\/models\/escape, which is not allowed/, 'through a symlink');
  t.equal(namedVolumeRefusal(0, 't', { driver: 'local', options: { type: 'tmpfs', device: 'tmpfs', o: 'size=100m' } }, allow, files), undefined, 'tmpfs');
  // The kernel ignores the type of a bind mount: tmpfs with o=bind binds its device.
  t.match(namedVolumeRefusal(0, 'tb', { driver: 'local', options: { type: 'tmpfs', device: '/', o: 'size=1m,bind' } }, allow, files), /binds host path \/, which is not allowed/, 'tmpfs with o=bind');
  t.match(namedVolumeRefusal(0, 'tr', { driver: 'local', options: { type: 'tmpfs', device: '/', o: ' rbind' } }, allow, files), /binds host path \/, which is not allowed/, 'tmpfs with o=rbind');
  t.equal(namedVolumeRefusal(0, 'ti', { driver: 'local', options: { type: 'tmpfs', device: '/data/models/llama', o: 'bind' } }, allow, files), undefined, 'a tmpfs-typed bind of an allowed path');
  t.match(namedVolumeRefusal(0, 'disk', { driver: 'local', options: { type: 'ext4', device: '/dev/sda1' } }, allow, files), /mounts device \/dev\/sda1 \(type ext4\)/);
  t.match(namedVolumeRefusal(0, 'p', { driver: 'rexray', options: {} }, allow, files), /uses volume driver rexray; only local volumes/);
});
