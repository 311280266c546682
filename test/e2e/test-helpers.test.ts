// Shared test helpers. The wait helper: deadlines are the work's duration on an idle machine, stretched
// while the machine is loaded (WARMPOOL_TEST_SLOWNESS fixes the factor here, so the test
// does not depend on this machine's load). The exit safety net: a killed test process
// leaves neither processes nor temporary directories behind.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { eventually, infraSkip, repoRoot, slowness } from '../src/index.js';

const within = (ms: number) => { const at = Date.now() + ms; return () => Date.now() >= at; };

t.test('eventually stretches its deadline by the machine slowness, and says so when it gives up', async (t) => {
  const saved = process.env.WARMPOOL_TEST_SLOWNESS;
  t.teardown(() => { if (saved === undefined) delete process.env.WARMPOOL_TEST_SLOWNESS; else process.env.WARMPOOL_TEST_SLOWNESS = saved; });

  process.env.WARMPOOL_TEST_SLOWNESS = '4';
  t.equal(slowness(), 4);
  const ready = within(600);
  t.equal(await eventually(() => ready(), { timeoutMs: 300, what: 'slow work' }), true, '600 ms of clock fit a 300 ms deadline at slowness 4');

  process.env.WARMPOOL_TEST_SLOWNESS = '1';
  const later = within(5_000);
  const started = Date.now();
  const err = await eventually(() => later(), { timeoutMs: 300, what: 'never in time' }).then(() => undefined, (e: unknown) => e as Error);
  t.ok(err, 'at slowness 1 the plain deadline holds');
  t.ok(Date.now() - started < 2_000, 'and it gives up near it');
  t.match(err?.message, /eventually\(never in time\) timed out after 300 ms of work \(\d+ ms on the clock; machine slowness up to 1\.0x\)/);

  delete process.env.WARMPOOL_TEST_SLOWNESS;
  const s = slowness();
  t.ok(s >= 1 && s <= 6, `measured from the load average: ${s.toFixed(2)}`);
});

t.test('a test process killed before its teardown (tap\'s timeout) leaves no etcd process and no data dir', { skip: infraSkip('etcd') }, async (t) => {
  const helpers = pathToFileURL(path.join(repoRoot, 'test', 'dist', 'src', 'index.js')).href;
  const script = `import { startEtcd } from ${JSON.stringify(helpers)};
const etcd = await startEtcd();
console.log(JSON.stringify({ dir: path.dirname(etcd.members[0].dataDir), pid: etcd.members[0].proc.pid }));
setInterval(() => undefined, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import path from 'node:path';\n${script}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const started = await eventually(() => (out.includes('\n') ? (JSON.parse(out) as { dir: string; pid: number }) : false), { timeoutMs: 20_000, what: 'etcd started by the child' });
  t.ok(existsSync(started.dir), `the data dir exists while it runs (${started.dir})`);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  t.notOk(existsSync(started.dir), 'the data dir is gone');
  await eventually(() => { try { process.kill(started.pid, 0); return false; } catch { return true; } }, { timeoutMs: 5_000, what: 'etcd gone' });
  t.pass('etcd is gone');
});
