// Issue 16, against the real sidecar and Docker: model servers load in different ways and
// the sidecar's readiness and warm-up must fit each. An app that refuses connections while
// loading (vLLM, TGI, Triton), one that answers 503 (llama.cpp, SGLang, NIM), and one that
// answers 200 at once but loads its model on the first request (Ollama): only a warm-up
// request makes its first real answer fast; a failing warm-up fails the boot with its reason.
import t from 'tap';
import { instanceKey, newSessionId, sessionCredential, CREDENTIAL_HEADER, type InstanceRecord } from '@warmpool/registry';
import { eventually, infraSkip } from '../src/index.js';
import { AgentHarness, chatSpec, requireImages } from './fixtures/agent-harness.js';

const WARMUP = {
  method: 'POST' as const, path: '/v1/chat/completions', timeoutSec: 60, expectStatus: 200,
  body: { model: 'warmpool-demo', max_tokens: 1, messages: [{ role: 'user', content: 'warm up' }] },
};

t.test('loading behaviours of model servers behind the real sidecar', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a');
  const secret = await h.registry.clusterSecret();
  // Every state each instance record went through.
  const history = new Map<string, string[]>();
  h.cache.on('change', (c: { kind: string; type: string; parts: string[] }) => {
    if (c.kind !== 'instances' || c.type !== 'put') return;
    const rec = h.cache.instances.get(c.parts[1]!)?.value;
    if (!rec) return;
    const seen = history.get(rec.id) ?? [];
    if (seen.at(-1) !== rec.state) seen.push(rec.state);
    history.set(rec.id, seen);
  });
  const readiness = { path: '/health', expectStatus: 200, intervalMs: 100, failureThreshold: 2 };
  await h.putService(chatSpec({ name: 'refuses', warm: 1, readiness, env: { BOOT_SECONDS: '2', LOAD_BEHAVIOUR: 'refuse' } }));
  await h.putService(chatSpec({ name: 'answers-503', warm: 1, readiness, env: { BOOT_SECONDS: '2' } }));
  await h.putService(chatSpec({ name: 'lazy-warmed', warm: 1, readiness, env: { BOOT_SECONDS: '3', LOAD_BEHAVIOUR: 'lazy' }, warmup: [WARMUP] }));
  await h.putService(chatSpec({ name: 'lazy-cold', warm: 1, readiness, env: { BOOT_SECONDS: '3', LOAD_BEHAVIOUR: 'lazy' } }));

  const firstAnswerMs = async (inst: InstanceRecord): Promise<number> => {
    const claim = await h.registry.claim({ service: inst.service, sessionId: newSessionId() });
    if (!claim.ok) throw new Error(`claim of ${inst.service} failed: ${claim.reason}`);
    const cred = sessionCredential(instanceKey(secret, claim.instance.id), claim.session.id);
    const started = Date.now();
    const res = await fetch(`http://${claim.instance.address}/v1/chat/completions`, {
      method: 'POST', headers: { [CREDENTIAL_HEADER]: cred, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }] }),
    });
    await res.text();
    const took = Date.now() - started;
    if (res.status !== 200) throw new Error(`first answer of ${inst.service}: ${res.status}`);
    // The demo image is shared: one built from an older tree lacks these behaviours.
    const about = (await (await fetch(`http://${claim.instance.address}/`, { headers: { [CREDENTIAL_HEADER]: cred } })).json()) as { behaviours?: { load: string } };
    if (!about.behaviours) throw new Error('warmpool/chatbot-demo is older than this test: rebuild it (bash deploy/images/build.sh)');
    if (inst.service.startsWith('lazy') && about.behaviours.load !== 'lazy') throw new Error(`${inst.service}: the app is not lazy`);
    return took;
  };

  for (const service of ['refuses', 'answers-503']) {
    const [inst] = await h.waitReady(1, { service, timeoutMs: 60_000 });
    t.ok(inst!.bootMs! >= 1500, `${service}: ready only once loaded (boot ${inst!.bootMs} ms, load 2 s)`);
    t.ok(inst!.stages && typeof inst!.stages.createMs === 'number' && inst!.stages.bootMs === inst!.bootMs, `${service}: stages recorded ${JSON.stringify(inst!.stages)}`);
    t.notOk(h.instances(service).some((i) => i.state === 'failed'), `${service}: no failed attempt while loading`);
    t.ok((await firstAnswerMs(inst!)) >= 0, `${service}: serves once ready`);
  }

  const [warmed] = await h.waitReady(1, { service: 'lazy-warmed', timeoutMs: 60_000 });
  t.same(history.get(warmed!.id), ['booting', 'warming', 'ready'], 'booting -> warming -> ready in the registry');
  t.ok(warmed!.stages!.warmupMs! >= 2500, `the warm-up paid the model's load: ${warmed!.stages!.warmupMs} ms`);
  const warmedMs = await firstAnswerMs(warmed!);
  // Paying the load would take at least its 3 s.
  t.ok(warmedMs < 2500, `with the warm-up, the first user does not pay the load: ${warmedMs} ms`);
  const [cold] = await h.waitReady(1, { service: 'lazy-cold', timeoutMs: 60_000 });
  const coldMs = await firstAnswerMs(cold!);
  t.ok(coldMs >= 2500, `without it, the first user pays the load: ${coldMs} ms`);
});

t.test('a failing warm-up fails the boot with its reason', { skip: infraSkip('docker', 'etcd') }, async (t) => {
  await requireImages();
  const h = await AgentHarness.create(t);
  await h.startAgent('host-a');
  await h.putService(chatSpec({
    name: 'bad-warmup', warm: 1, env: { BOOT_SECONDS: '0', LOAD_BEHAVIOUR: 'lazy' },
    warmup: [WARMUP, { method: 'POST', path: '/api/generate', body: { model: 'm', prompt: 'hi' }, timeoutSec: 10, expectStatus: 200 }],
  }));
  const failed = await eventually(() => h.instances('bad-warmup').find((i) => i.state === 'failed' && /in a row/.test(i.reason ?? '')) ?? false,
    { timeoutMs: 60_000, what: 'a failed record' });
  t.match(failed.reason, /warm-up 2 of 2 failed: POST \/api\/generate answered 404, expected 200/, String(failed.reason));
  await h.registry.deleteService('bad-warmup');
});
