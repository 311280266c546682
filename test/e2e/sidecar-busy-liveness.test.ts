// Issue 16, against the real sidecar and Docker: a busy model server answers /health slowly,
// which must never end a live session; a server that hangs entirely while idle must.
import t from 'tap';
import { instanceKey, newSessionId, sessionCredential, CREDENTIAL_HEADER } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

const liveness = { path: '/health', expectStatus: 200, intervalMs: 200, timeoutMs: 400, failureThreshold: 2 };

t.test('busy and hung instances', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a');
  const secret = await h.registry.clusterSecret();
  const claimOne = async (service: string) => {
    const [inst] = await h.waitReady(1, { service, timeoutMs: 60_000 });
    const claim = await h.registry.claim({ service, sessionId: newSessionId() });
    if (!claim.ok || claim.instance.id !== inst!.id) throw new Error(`claim failed: ${JSON.stringify(claim)}`);
    const cred = sessionCredential(instanceKey(secret, claim.instance.id), claim.session.id);
    // The demo image is shared: one built from an older tree lacks these behaviours.
    const about = (await (await fetch(`http://${claim.instance.address}/`, { headers: { [CREDENTIAL_HEADER]: cred } })).json()) as { behaviours?: Record<string, unknown> };
    if (!about.behaviours) throw new Error('warmpool/chatbot-demo is older than this test: rebuild it (bash deploy/images/build.sh)');
    return { inst: claim.instance, session: claim.session, cred, behaviours: about.behaviours };
  };

  await t.test('/health stalls while a stream is in flight: the session survives, the stream completes', async (t) => {
    await h.putService(chatSpec({ name: 'stalls', warm: 1, liveness, env: { BOOT_SECONDS: '0.5', HEALTH_STALL_WHILE_STREAMING: '1', TOKEN_DELAY_MS: '200' } }));
    const { inst, session, cred, behaviours } = await claimOne('stalls');
    t.equal(behaviours.stallHealthWhileStreaming, true, 'the app stalls /health while it streams');
    let failed = false;
    const watch = (): void => { if (h.cache.instances.get(inst.id)?.value.state === 'failed') failed = true; };
    h.cache.on('change', watch);
    t.teardown(() => { h.cache.off('change', watch); });
    // About 40 words: 40 chunks, 200 ms apart, so 8 s of stalled health (20 liveness periods).
    const words = Array.from({ length: 36 }, (_, i) => `word${i}`).join(' ');
    const started = Date.now();
    const res = await fetch(`http://${inst.address}/v1/chat/completions`, {
      method: 'POST', headers: { [CREDENTIAL_HEADER]: cred, 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: words }] }),
    });
    t.equal(res.status, 200);
    const text = await res.text();
    t.ok(Date.now() - started >= 6000, `a long stream: ${Date.now() - started} ms`);
    t.match(text, /word35[\s\S]*data: \[DONE\]/, 'the stream completed');
    t.notOk(failed, 'the instance was never marked failed');
    t.ok(h.cache.sessions.has(session.id), 'the session is still live');
    const after = await fetch(`http://${inst.address}/v1/models`, { headers: { [CREDENTIAL_HEADER]: cred } });
    t.equal(after.status, 200, 'and still served');
    await h.registry.endSession(session.id, 'ended');
  });

  await t.test('hangs entirely while idle: the session ends and the instance is replaced', async (t) => {
    await h.putService(chatSpec({ name: 'hangs', warm: 1, liveness, env: { BOOT_SECONDS: '0.5', DEBUG_CONTROLS: '1' } }));
    const { inst, session, cred, behaviours } = await claimOne('hangs');
    t.equal(behaviours.debugControls, true);
    let reason: string | undefined;
    const watch = (): void => {
      const rec = h.cache.instances.get(inst.id)?.value;
      if (rec?.state === 'failed' && /in a row/.test(rec.reason ?? '')) reason = rec.reason;
    };
    h.cache.on('change', watch);
    t.teardown(() => { h.cache.off('change', watch); });
    const res = await fetch(`http://${inst.address}/debug/hang`, { method: 'POST', headers: { [CREDENTIAL_HEADER]: cred } });
    t.equal(res.status, 202, 'the app is wedged from now on');
    const tomb = await eventually(() => h.cache.tombstones.get(session.id)?.value ?? false, { timeoutMs: 30_000, what: 'the session ended' });
    t.equal(tomb.reason, 'instance-gone');
    t.notOk(h.cache.sessions.has(session.id), 'no live session left');
    await eventually(() => reason !== undefined, { timeoutMs: 30_000, what: 'the failed record with its cause' });
    t.match(reason, /failed liveness probes in a row \(last: no answer in time\)/, String(reason));
    await eventually(async () => (await h.containers({ 'warmpool.instance': inst.id })).length === 0, { timeoutMs: 30_000, what: 'its containers removed' });
    const [next] = await h.waitReady(1, { service: 'hangs', timeoutMs: 60_000 });
    t.not(next!.id, inst.id, 'a fresh instance is ready in its place');
  });
});
