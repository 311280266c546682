// A named volume is not a way around the agent's allow-list. Only volumes whose name matches
// the agent's allow.volumes are granted (regression, break-it pass: any named volume of a
// host, e.g. another tenant's model cache, could be mounted by whoever writes the registry);
// the engine is never asked for another one, so it neither mounts nor creates it. And a
// volume that already exists with local driver options binding a host path (`driver_opts:
// {type: none, o: bind, device: /}`) mounts that host path: it is granted only when its
// device is under allow.hostPaths. Each refusal names the field and the volume in `warmpool
// status`, the instance fails, and no container of the service is left.
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually, infraSkip, repoRoot } from '../src/index.js';
import { AgentHarness, chatSpec, docker, requireImages } from './fixtures/agent-harness.js';

const exec = promisify(execFile);
const bin = path.join(repoRoot, 'cli', 'bin', 'warmpool.js');

t.test('named volumes: only names the agent allows, and binds of host paths pass the host-path allow-list', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  // The volumes outlive the harness's containers: created (and their removal registered)
  // before it, so its teardown removes the containers first.
  const id = randomBytes(5).toString('hex');
  const escape = `wp-brk-escape-${id}`;
  const inside = `wp-brk-inside-${id}`;
  const unlisted = `wp-brk-unlisted-${id}`;
  // type=tmpfs with o=bind is a bind all the same: the kernel ignores the type of a bind mount.
  const tmpbind = `wp-brk-tmpbind-${id}`;
  t.teardown(() => docker('volume', 'rm', '-f', escape, inside, unlisted, tmpbind).catch(() => undefined));
  const h = await AgentHarness.create(t);
  const dir = h.runDir();
  const allowed = path.join(dir, 'models');
  const outside = path.join(dir, 'outside');
  mkdirSync(path.join(allowed, 'llama'), { recursive: true });
  mkdirSync(outside);
  await docker('volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${outside}`, escape);
  await docker('volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${path.join(allowed, 'llama')}`, inside);
  await docker('volume', 'create', '--driver', 'local', '--opt', 'type=tmpfs', '--opt', 'o=bind', '--opt', `device=${outside}`, tmpbind);
  const globs = [`wp-brk-escape-${id}`, `wp-brk-in*-${id}`, `wp-brk-tmpbind-${id}`];
  h.spawnAgent('vols', { extra: ['--allow-host-path', allowed, ...globs.flatMap((g) => ['--allow-volume', g])] });

  await h.putService(chatSpec({ name: 'escape', warm: 1, volumes: [{ source: escape, target: '/host', readOnly: false }] }));
  await h.putService(chatSpec({ name: 'inside', warm: 1, volumes: [{ source: inside, target: '/models', readOnly: true }] }));
  await h.putService(chatSpec({ name: 'unlisted', warm: 1, volumes: [{ source: unlisted, target: '/data', readOnly: false }] }));
  await h.putService(chatSpec({ name: 'tmpbind', warm: 1, volumes: [{ source: tmpbind, target: '/host', readOnly: false }] }));

  await h.waitReady(1, { service: 'inside', timeoutMs: 60_000 });
  t.ok(h.instances('inside').some((i) => i.state === 'ready'), 'a volume binding an allowed path is granted');
  await eventually(() => {
    for (const s of ['escape', 'unlisted', 'tmpbind']) if (!h.instances(s).some((i) => i.state === 'failed')) throw new Error(`${s} not failed yet`);
  }, { timeoutMs: 30_000, what: 'failed record' });
  const failed = h.instances('escape').find((i) => i.state === 'failed');
  t.match(failed, { reason: new RegExp(`volumes\\[0\\]: named volume ${escape} binds host path ${outside}, which is not allowed on this host`) });
  t.notOk((await h.containers({ 'warmpool.service': 'escape' })).length, 'no container for the refused instance');
  t.match(h.instances('tmpbind').find((i) => i.state === 'failed'), { reason: new RegExp(`volumes\\[0\\]: named volume ${tmpbind} binds host path ${outside}, which is not allowed on this host`) }, 'a tmpfs-typed bind is a bind');
  t.notOk((await h.containers({ 'warmpool.service': 'tmpbind' })).length, 'no container for the tmpfs-typed bind');
  const out = (await exec(process.execPath, [bin, 'status'], { env: { ...process.env, WARMPOOL_ETCD: h.etcd.endpoints.join(','), WARMPOOL_PREFIX: h.prefix }, timeout: 30_000 })).stdout;
  t.match(out, new RegExp(`unlisted\\s+\\S+\\s+vols\\s+launch failed: volumes\\[0\\]: named volume ${unlisted} is not allowed on this host \\(agent allow\\.volumes: ${globs.join(', ').replace(/\*/g, '\\*')}\\)`));
  t.notOk((await h.containers({ 'warmpool.service': 'unlisted' })).length, 'no container for the unlisted volume');
  await t.rejects(docker('volume', 'inspect', unlisted), 'the engine never created the unlisted volume');
});
