// Images from a registry with a login: a real docker-registry (htpasswd auth) on 127.0.0.1,
// two agents (their own processes, two hosts) on a private Docker engine that lacks the chatbot image, with
// credentials from a Docker config file. The cold pull shows as `pulling` with bytes in
// the registry, the host then has the image in `warmpool status`; wrong credentials, a
// missing tag and a registry that is down each fail their service with the registry's own
// reason in `warmpool status`, and the service that works keeps working.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry, type InstanceRecord } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { eventually, infraSkip, startImageRegistry, startMesh, startPrivateDockerd } from '../src/index.js';
import { requireImages } from './fixtures/agent-harness.js';

const service = (name: string, image: string) => ({
  name, image, warm: 1, bootTimeoutSec: 60, env: { BOOT_SECONDS: '0' },
  readiness: { path: '/health', intervalMs: 100 }, session: { idleTimeoutSec: 60, maxLifetimeSec: 600 },
});

t.test('agents pull from a registry with a login; failures show the registry\'s reason', { skip: infraSkip('docker', 'etcd', 'registry') }, async (t) => {
  await requireImages();
  const t0 = Date.now();
  const step = (what: string): void => { t.comment(`${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`); };
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-e2e-images-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const reg = await startImageRegistry();
  t.teardown(() => reg.close());
  // The private engine has the sidecar but not the chatbot: its pull is cold.
  const [engine, chatRef] = await Promise.all([
    startPrivateDockerd({ images: ['warmpool/sidecar'] }),
    reg.push('warmpool/chatbot-demo', 'warmpool/chatbot-demo:e2e'),
  ]);
  t.teardown(() => engine.close());
  step('registry (image pushed) and private engine up');
  const dockerConfig = reg.dockerConfig(dir, {
    [reg.host]: { user: reg.user, password: reg.password },
    // The same registry under another name, with a wrong password.
    [`localhost:${reg.port}`]: { user: reg.user, password: 'not-the-password' },
  });

  const mesh = await startMesh({
    // Two hosts on one private engine: each agent pulls ahead of need and reports the image.
    agents: 2, routers: 1,
    agentArgs: ['--docker-socket', engine.socketPath, '--docker-config', dockerConfig, '--resync-sec', '2'],
  });
  t.teardown(async () => {
    if (!t.passing()) for (const a of mesh.agents) process.stderr.write(`--- ${a.name} log (tail):\n${a.output.slice(-40).join('\n')}\n`);
    await mesh.stop();
  });
  const store = new EtcdKvStore({ endpoints: mesh.etcd.endpoints });
  const registry = new Registry(store, { prefix: mesh.prefix });
  t.teardown(async () => { await registry.close(); await store.close(); });
  step('mesh up');
  const cache = await registry.cache();
  const pullingSeen: InstanceRecord[] = [];
  cache.on('change', () => {
    for (const { value: i } of cache.instances.values()) if (i.state === 'pulling' && i.pull) pullingSeen.push(i);
  });
  const status = async (): Promise<string> => {
    const r = await mesh.cli('status');
    if (r.code !== 0) throw new Error(`warmpool status: ${r.stderr}`);
    return r.stdout;
  };

  const file = path.join(dir, 'services.json');
  const apply = async (services: object[]): Promise<void> => {
    writeFileSync(file, JSON.stringify({ services }));
    const r = await mesh.cli('apply', '-f', file);
    if (r.code !== 0) throw new Error(`apply: ${r.stderr}`);
  };

  // 1. The cold pull: pulling (with bytes), then booting and ready.
  await apply([service('chat', chatRef)]);
  const ready = await eventually(() => [...cache.instances.values()].map((v) => v.value).find((i) => i.service === 'chat' && i.state === 'ready') ?? false,
    { timeoutMs: 90_000, intervalMs: 100, what: 'chat ready after its pull' });
  step('chat ready');
  t.ok(pullingSeen.length > 0, `the instance was pulling first (${pullingSeen.length} records seen)`);
  const last = pullingSeen.at(-1)!;
  t.equal(last.pull!.image, chatRef, 'the pull names the image');
  t.ok(pullingSeen.some((p) => (p.pull!.bytesTotal ?? 0) > 10_000_000), `bytes total announced (${JSON.stringify(last.pull)})`);
  t.ok((ready.stages?.pullMs ?? 0) > 0, `pull time recorded apart from the boot (pullMs ${ready.stages?.pullMs}, bootMs ${ready.bootMs})`);
  t.ok(await engine.docker('image', 'inspect', chatRef), 'the private engine holds the pulled image');
  await eventually(async () => {
    const text = await status();
    return /\nchat\s.*2\/2 hosts/.test(text) && /IMAGES\n.*\nchat\s+\S+chatbot-demo:e2e\s+host-1\s+present\nchat\s+\S+chatbot-demo:e2e\s+host-2\s+present/.test(text);
  }, { timeoutMs: 20_000, intervalMs: 500, what: 'status: both hosts have the image' });
  t.pass('warmpool status shows the image on both hosts');
  const dash = await (await fetch(`${mesh.routers[0]!.url}/v1/dashboard/state`)).json() as { status: { services: { name: string; imagePresentOn: number }[] } };
  t.equal(dash.status.services.find((s) => s.name === 'chat')?.imagePresentOn, 2, 'the dashboard shows the image on both hosts');
  const session = await fetch(`${mesh.routers[0]!.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"service":"chat"}' });
  t.equal(session.status, 201, 'a session on the pulled instance');

  // 2. Wrong credentials and a missing tag: each fails with the registry's words.
  const badAuth = service('badauth', `localhost:${reg.port}/warmpool/chatbot-demo:e2e`);
  const badTag = service('badtag', `${reg.host}/warmpool/chatbot-demo:no-such-tag`);
  await apply([service('chat', chatRef), badAuth, badTag]);
  // Waits on the registry (cheap), then reads the reason in `warmpool status` once.
  const failedWith = async (svc: string, pattern: RegExp): Promise<void> => {
    await eventually(() => [...cache.instances.values()].some((v) => v.value.service === svc && v.value.state === 'failed' && pattern.test(v.value.reason ?? '')),
      { timeoutMs: 30_000, intervalMs: 100, what: `${svc} failed with ${pattern}` });
    const text = await status();
    const row = text.split('\n').find((l) => l.startsWith(`${svc} `) && /pull of/.test(l));
    t.match(row, pattern, `warmpool status shows why ${svc} fails: ${row}`);
  };
  await failedWith('badauth', /failed \(auth\): .*(unauthorized|authentication required)/);
  await failedWith('badtag', /failed \(not-found\): .*(manifest unknown|not found)/);
  step('auth and tag failures shown');

  // 3. The registry goes down: a new image cannot be pulled, and says why.
  await reg.stopServer();
  await apply([service('chat', chatRef), badAuth, badTag, service('down', `${reg.host}/warmpool/chatbot-demo:v2`)]);
  await failedWith('down', /failed \(unreachable\): .*connection refused/);
  step('registry-down failure shown');

  // Nothing else broke: the working service still has its instance (claimed) and a fresh warm one.
  const chat = (): InstanceRecord[] => [...cache.instances.values()].map((v) => v.value).filter((i) => i.service === 'chat');
  t.ok(chat().some((i) => i.id === ready.id), 'the claimed instance is still there');
  await eventually(() => chat().some((i) => i.state === 'ready' && i.id !== ready.id), { timeoutMs: 30_000, what: 'a warm replacement' });
  t.pass('the replacement booted from the image on the host, with the registry down');
  for (const a of mesh.agents) {
    t.equal(a.proc!.exitCode, null, `${a.name} never exited`);
    t.notMatch(a.output.join('\n'), new RegExp(reg.password), `the password is in no log line of ${a.name}`);
  }
});
