import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, symlinkSync, unlinkSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot, inCI } from '../src/index.js';

const exec = promisify(execFile);
const unitsDir = path.join(repoRoot, 'deploy', 'systemd');
const binPath = '/usr/local/bin/warmpool';

const missing = ((): false | string => {
  if (existsSync('/usr/bin/systemd-analyze')) return false;
  if (inCI) throw new Error('required infrastructure missing in CI: systemd-analyze (package systemd)');
  return 'systemd-analyze not installed';
})();

t.test('systemd units pass systemd-analyze verify', { skip: missing }, async (t) => {
  const units = readdirSync(unitsDir).filter((f) => f.endsWith('.service'));
  t.ok(units.includes('warmpool-agent.service') && units.includes('warmpool-router.service'), `units present: ${units.join(', ')}`);
  // The units run /usr/local/bin/warmpool, as docs/operations.md installs it; verify checks
  // that the binary exists, so link it for the check if it is not installed.
  let linked = false;
  if (!existsSync(binPath)) {
    try { lstatSync(binPath); unlinkSync(binPath); } catch { /* no dangling link */ }
    symlinkSync(path.join(repoRoot, 'cli', 'bin', 'warmpool.js'), binPath);
    linked = true;
  }
  t.teardown(() => { if (linked) unlinkSync(binPath); });
  for (const u of units) {
    const r = await exec('systemd-analyze', ['verify', path.join(unitsDir, u)]).then(
      (x) => ({ ok: true, out: `${x.stdout}${x.stderr}` }),
      (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    t.ok(r.ok, `${u} verifies`);
    t.equal(r.out.trim(), '', `${u}: no warnings`);
  }
});
