import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { baseSpec } from './spec-fixture.js';
import { grantHostOptions, grantSecrets, nodeFiles, redact } from '../src/host-policy.js';

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

t.test('secret files: a NUL byte is refused for an env value, the reason names the file only', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const allow = { hostPaths: [], ipcHost: false, secretDirs: [dir], volumes: [] };
  const bin = path.join(dir, 'binkey');
  // The engine refuses such an env value and quotes it whole in its error (logged before).
  writeFileSync(bin, 'BIN\0KEY-SECRET-NUL-4242');
  const r = grantHostOptions({ ...base, secretEnv: { BINKEY: bin } }, allow, nodeFiles);
  t.match(r, { ok: false, reason: /^secretEnv\.BINKEY: the secret file .*binkey holds a NUL byte/ });
  t.notMatch(JSON.stringify(r), /SECRET-NUL/, 'the value is nowhere in the refusal');
});

t.test('redact: secret values, whole or quoted with escapes, are replaced in engine messages', async (t) => {
  const secrets = ['hf_abcdefSECRET', 'BIN\0KEY-SECRET-NUL-4242', 'ab'];
  t.equal(redact('env HF_TOKEN=hf_abcdefSECRET refused', secrets), 'env HF_TOKEN=[secret] refused');
  // runc quotes the variable with Go's %q: the NUL shows as \x00.
  t.equal(redact('value can\'t contain null(\\x00): "BINKEY=BIN\\x00KEY-SECRET-NUL-4242"', secrets), 'value can\'t contain null(\\x00): "BINKEY=BIN\\x00[secret]"');
  t.equal(redact('raw BIN\0KEY-SECRET-NUL-4242 end', secrets), 'raw [secret] end');
  t.equal(redact('nothing here', []), 'nothing here');
  t.equal(redact('about ab', secrets), '[secret]out [secret]', 'a short value is replaced wherever it occurs (more than needed, never less)');
  t.equal(redact('x BIN y', ['BIN\0KEY']), 'x BIN y', 'pieces of a value under 4 characters are not hunted for');
  // Quotes and backslashes escaped by the engine's quoting (found by a second helper).
  t.equal(redact('invalid env "TOKEN=p@ss\\"word123"', ['p@ss"word123']), 'invalid env "TOKEN=[secret]"', 'the quoted form whole');
  t.equal(redact('file "C:\\\\dir\\\\secret-key"', ['C:\\dir\\secret-key']), 'file "[secret]"', 'backslashes escaped');
  t.equal(redact('env "K=ab\\u0001cdef"', ['ab\u0001cdef']), 'env "K=[secret]"', 'JSON\'s escape of a control byte');
  t.equal(redact('env "K=wxyz\\x01abcd"', ['wxyz\u0001abcd']), 'env "K=[secret]\\x01[secret]"', 'another escaping: the runs around it');
  t.equal(redact('a.b*c+d', ['.b*c+']), 'a[secret]d', 'regex characters are plain text');
  const s = grantSecrets({ volumes: [], secretEnv: { A: 'x1' }, warmupHeaders: [{ authorization: 'Bearer y2' }] });
  t.same(s, ['x1', 'Bearer y2']);
});
