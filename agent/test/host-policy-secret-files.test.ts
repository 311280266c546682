import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { baseSpec } from './spec-fixture.js';
import { grantHostOptions, nodeFiles } from '../src/host-policy.js';

// A secret file is read synchronously by the agent: a FIFO in a secret directory would block
// its event loop for good (every pool of the host stuck), a huge file would fill its memory
// (and could never be an env value: Linux caps one at 128 KiB). Only regular files up to
// 64 KiB are read; anything else is a refusal naming the file.
const base = baseSpec;

t.test('secret files: FIFOs and huge files are refused, not read (real files)', { timeout: 20_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const allow = { hostPaths: [], ipcHost: false, secretDirs: [dir], volumes: [] };
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const big = path.join(dir, 'big');
  writeFileSync(big, Buffer.alloc(1024 * 1024, 'a'));
  const ok = path.join(dir, 'ok');
  writeFileSync(ok, 'value\n');

  // A writer that opens the FIFO a few seconds later (bounded by timeout(1)): without the
  // check the read below blocks this very process until then and returns what it wrote.
  const writer = spawn('timeout', ['10', 'sh', '-c', `sleep 3; echo leaked > ${fifo}`], { stdio: 'ignore' });
  t.teardown(() => { writer.kill(); });
  const t0 = Date.now();
  t.match(grantHostOptions({ ...base, secretEnv: { T: fifo } }, allow, nodeFiles), { ok: false, reason: /secretEnv\.T: .*fifo.*not a regular file/ }, 'a FIFO is refused');
  t.ok(Date.now() - t0 < 2000, 'without waiting for a writer');
  t.match(grantHostOptions({ ...base, secretEnv: { T: big } }, allow, nodeFiles), { ok: false, reason: /secretEnv\.T: .*big.*larger than 65536 bytes/ });
  t.match(grantHostOptions({ ...base, secretEnv: { T: dir } }, allow, nodeFiles), { ok: false, reason: /secretEnv\.T: / }, 'a directory');
  t.same(grantHostOptions({ ...base, secretEnv: { T: ok } }, allow, nodeFiles), { ok: true, grant: { volumes: [], secretEnv: { T: 'value' } } });
});
