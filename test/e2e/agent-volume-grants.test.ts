// A named volume is not a way around the agent's allow-list: a volume that already exists on
// the host with local driver options binding a host path (`driver_opts: {type: none, o: bind,
// device: /}`) mounts that host path. Such a volume is granted only when its device is under
// allow.hostPaths; the refusal names the field and the volume, the instance fails, and no
// container of the service is left.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

t.test('named volumes binding host paths pass the host-path allow-list', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  // The volumes outlive the harness's containers: created (and their removal registered)
  // before it, so its teardown removes the containers first.
  const id = randomBytes(5).toString('hex');
  const escape = `wp-brk-escape-${id}`;
  const inside = `wp-brk-inside-${id}`;
  t.teardown(() => docker('volume', 'rm', '-f', escape, inside).catch(() => undefined));
  const h = await AgentHarness.create(t);
  const dir = h.runDir();
  const allowed = path.join(dir, 'models');
  const outside = path.join(dir, 'outside');
  mkdirSync(path.join(allowed, 'llama'), { recursive: true });
  mkdirSync(outside);
  await docker('volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${outside}`, escape);
  await docker('volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${path.join(allowed, 'llama')}`, inside);
  h.spawnAgent('vols', { extra: ['--allow-host-path', allowed] });

  await h.putService(chatSpec({ name: 'escape', warm: 1, volumes: [{ source: escape, target: '/host', readOnly: false }] }));
  await h.putService(chatSpec({ name: 'inside', warm: 1, volumes: [{ source: inside, target: '/models', readOnly: true }] }));

  await h.waitReady(1, { service: 'inside', timeoutMs: 60_000 });
  t.ok(h.instances('inside').some((i) => i.state === 'ready'), 'a volume binding an allowed path is granted');
  await eventually(() => {
    if (!h.instances('escape').some((i) => i.state === 'failed')) throw new Error('escape not failed yet');
  }, { timeoutMs: 30_000, what: 'failed record' });
  const failed = h.instances('escape').find((i) => i.state === 'failed');
  t.match(failed, { reason: new RegExp(`volumes\\[0\\]: named volume ${escape} binds host path ${outside}, which is not allowed on this host`) });
  t.notOk((await h.containers({ 'warmpool.service': 'escape' })).length, 'no container for the refused instance');
});
