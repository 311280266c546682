// Issue 13, items 6 and 7, against the real Docker engine and the real sidecar: an engine
// slower than the boot timeout (simulated by delaying each engine call, as a loaded host
// does) must not fail instances whose app boots in time; an engine call past the creation
// deadline is a host fault that does not grow the service's backoff; and an app killed for
// memory is recorded as such, whatever symptom the agent noticed first.
import t from 'tap';
import { instanceKey, newSessionId, sessionCredential, CREDENTIAL_HEADER } from '@warmpool/registry';
import { DockerodeRuntime, type ContainerCreateSpec, type ContainerRuntime } from '@warmpool/agent';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

/** The real engine, with every create and start delayed (a host under Docker load). */
class SlowEngine extends DockerodeRuntime implements ContainerRuntime {
  constructor(private readonly delayMs: { create: number; start: number }) { super(); }
  private pause(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }
  override async create(spec: ContainerCreateSpec): Promise<string> { await this.pause(this.delayMs.create); return super.create(spec); }
  override async start(id: string): Promise<void> { await this.pause(this.delayMs.start); return super.start(id); }
}

t.test('host faults and causes of death on the real engine', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();

  await t.test('13.6 an engine slower than the boot timeout: the app boots in time, the instance is ready', async (t) => {
    const h = await AgentHarness.create(t);
    // Creating and starting the pod take 3 x 1.5 s; the app itself needs 1 s of its 3 s boot timeout.
    const agent = await h.startAgent('host-a', { runtime: new SlowEngine({ create: 1500, start: 1500 }) });
    await h.putService(chatSpec({ name: 'chat', warm: 1, bootTimeoutSec: 3, env: { BOOT_SECONDS: '1' } }));
    const [inst] = await h.waitReady(1, { timeoutMs: 60_000 });
    t.notOk(h.instances().some((i) => i.state === 'failed'), 'no instance failed its boot');
    t.ok(inst!.stages!.createMs! >= 3000, `container creation timed as its own stage: ${inst!.stages!.createMs} ms`);
    t.same(agent.status().backoff, {}, 'no crash backoff');
  });

  await t.test('13.6 an engine call past the creation deadline: a host fault, not the service\'s', async (t) => {
    const h = await AgentHarness.create(t);
    const agent = await h.startAgent('host-a', { runtime: new SlowEngine({ create: 3000, start: 0 }), timing: { createTimeoutMs: 1000, backoffBaseMs: 2000, backoffMaxMs: 4000 } });
    await h.putService(chatSpec({ name: 'chat', warm: 1 }));
    const failed = await eventually(() => h.instances().find((i) => i.state === 'failed') ?? false, { timeoutMs: 30_000, what: 'a failed record' });
    t.match(failed.reason, /^host fault \(engine too slow\): create the (app|sidecar) container: the Docker engine did not finish within 1 s/, String(failed.reason));
    t.same(agent.status().backoff, {}, 'the service\'s crash backoff is untouched');
    t.ok(agent.status().hostBackoff['*'], 'the host backs off');
    // The container the engine created after the deadline is removed, never orphaned.
    await eventually(async () => (await h.containers({ 'warmpool.instance': failed.id })).length === 0, { timeoutMs: 30_000, what: 'the late container removed' });
  });

  await t.test('13.7 an app killed for memory is recorded as out of memory', async (t) => {
    const h = await AgentHarness.create(t);
    await h.startAgent('host-a');
    await h.putService(chatSpec({
      name: 'chat', warm: 1, env: { BOOT_SECONDS: '0.5', DEBUG_CONTROLS: '1' }, resources: { memoryMb: 96, cpus: 0 },
      liveness: { path: '/health', expectStatus: 200, intervalMs: 100, timeoutMs: 200, failureThreshold: 1 },
    }));
    const [inst] = await h.waitReady(1, { timeoutMs: 60_000 });
    let reason: string | undefined;
    const watch = (): void => {
      const rec = h.cache.instances.get(inst!.id)?.value;
      if (rec?.state === 'failed' && /; failure \d+ in a row/.test(rec.reason ?? '')) reason = rec.reason;
    };
    h.cache.on('change', watch);
    t.teardown(() => { h.cache.off('change', watch); });
    const claim = await h.registry.claim({ service: 'chat', sessionId: newSessionId() });
    if (!claim.ok) throw new Error('claim failed');
    const cred = sessionCredential(instanceKey(await h.registry.clusterSecret(), claim.instance.id), claim.session.id);
    const about = (await (await fetch(`http://${claim.instance.address}/`, { headers: { [CREDENTIAL_HEADER]: cred } })).json()) as { behaviours?: { debugControls: boolean } };
    if (!about.behaviours?.debugControls) throw new Error('warmpool/chatbot-demo is older than this test: rebuild it (bash deploy/images/build.sh)');
    const res = await fetch(`http://${claim.instance.address}/debug/oom`, { method: 'POST', headers: { [CREDENTIAL_HEADER]: cred } });
    t.equal(res.status, 202, 'the app starts eating memory');
    await eventually(() => reason !== undefined, { timeoutMs: 30_000, what: 'the failed record' });
    t.match(reason, /^app container ran out of memory \(OOM-killed, exit code 137\)/, String(reason));
  });
});
