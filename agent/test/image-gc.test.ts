// Image garbage collection: only images the agent pulled, only after they went unused for
// the grace period, never one a container uses; the list survives an agent restart.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ImageGc } from '../src/image-gc.js';
import { FakeRuntime } from './fake-runtime.js';

t.test('unused pulled images go after the grace period; used and foreign ones stay', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-gc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let now = 1_000_000;
  const clock = { now: () => now, setTimeout: () => () => undefined };
  const runtime = new FakeRuntime();
  const log = pino({ level: 'silent' });
  const gc = new ImageGc({ runtime, clock, log, runDir: dir, afterMs: 60_000 });
  for (const image of ['reg/a:1', 'reg/b:1', 'reg/c:1']) {
    await runtime.pull(image, {});
    gc.notePulled(image);
  }
  // b is still named by a service; c has a (stopped) container; warmpool/chatbot-demo was never pulled by us.
  await runtime.create({ name: 'x', image: 'reg/c:1', env: {}, labels: {} });
  now += 30_000;
  t.same(await gc.sweep(new Set(['reg/b:1'])), [], 'nothing is due within the grace period');
  now += 31_000;
  t.same(await gc.sweep(new Set(['reg/b:1'])), ['reg/a:1'], 'the unused pulled image is removed after the grace period');
  t.ok(runtime.images.has('reg/b:1') && runtime.images.has('reg/c:1') && runtime.images.has('warmpool/chatbot-demo'), 'the others stay');

  // A restarted agent (new instance, same run dir) still knows what it pulled.
  const again = new ImageGc({ runtime, clock, log, runDir: dir, afterMs: 60_000 });
  t.same(again.tracked().sort(), ['reg/b:1', 'reg/c:1']);
  now += 120_000;
  t.same(await again.sweep(new Set()), ['reg/b:1'], 'b goes once no service names it for the grace period (it was named at the last sweep)');
  for (const c of [...runtime.containers.keys()]) await runtime.remove(c);
  t.same(await again.sweep(new Set()), ['reg/c:1'], 'c goes once no container uses it');
  t.same(runtime.removedImages, ['reg/a:1', 'reg/b:1', 'reg/c:1']);
  t.ok(runtime.images.has('warmpool/chatbot-demo'), 'an image the agent did not pull is never removed');

  const off = new ImageGc({ runtime, clock, log, runDir: mkdtempSync(path.join(dir, 'off-')), afterMs: 0 });
  off.notePulled('warmpool/sidecar');
  now += 10_000_000;
  t.same(await off.sweep(new Set()), [], 'gcAfterSec 0: never');
});
