import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { ServiceSpec } from '@warmpool/registry';
import { baseSpec } from './spec-fixture.js';
import { grantHostOptions, nodeFiles } from '../src/host-policy.js';

const base = baseSpec;

// A container with a writable bind mount of an allowed prefix can plant a symlink there
// pointing out of it; a path BELOW that symlink that does not exist yet has no real path,
// and the engine creates a missing bind source (following the symlink) as root.
t.test('a missing path below a symlink out of the allowed prefix is refused (real files)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const models = path.join(dir, 'models');
  const outside = path.join(dir, 'outside');
  mkdirSync(models);
  mkdirSync(outside);
  symlinkSync(outside, path.join(models, 'escape'));
  const allow = { hostPaths: [models], ipcHost: false, secretDirs: [path.join(dir, 'secrets')], volumes: [] };
  const vol = (source: string): ServiceSpec => ({ ...base, volumes: [{ source, target: '/m', readOnly: false }] });

  t.ok(grantHostOptions(vol(path.join(models, 'new', 'dir')), allow, nodeFiles).ok, 'a missing path under the prefix itself is allowed');
  t.match(grantHostOptions(vol(path.join(models, 'escape', 'new')), allow, nodeFiles),
    { ok: false, reason: /volumes\[0\]: host path .*escape\/new is not allowed/ }, 'missing path below an escaping symlink');
  t.match(grantHostOptions(vol(path.join(models, 'escape', 'a', 'b')), allow, nodeFiles), { ok: false }, 'deeper missing path too');
  t.match(grantHostOptions({ ...base, secretEnv: { TOKEN: path.join(models, 'escape', 'tok') } }, { ...allow, secretDirs: [models] }, nodeFiles),
    { ok: false, reason: /secretEnv\.TOKEN: .* is not under a secret directory/ }, 'secret paths the same way');
});

t.test('a bind mount holding a secret directory is refused even under an allowed prefix (real files)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets);
  mkdirSync(path.join(dir, 'models'));
  const allow = { hostPaths: [dir], ipcHost: false, secretDirs: [secrets], volumes: [] };
  const vol = (source: string): ServiceSpec => ({ ...base, volumes: [{ source, target: '/m', readOnly: true }] });
  t.match(grantHostOptions(vol(dir), allow, nodeFiles), { ok: false, reason: /volumes\[0\]: host path .* holds the secret directory/ }, 'a parent of the secrets');
  t.match(grantHostOptions(vol(secrets), allow, nodeFiles), { ok: false, reason: /holds the secret directory/ }, 'the secrets themselves');
  t.ok(grantHostOptions(vol(path.join(dir, 'models')), allow, nodeFiles).ok, 'a sibling');
});
