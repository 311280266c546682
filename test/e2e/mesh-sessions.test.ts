import t from 'tap';
import { startMesh, infraSkip, eventually, listContainersByLabel } from '../src/index.js';

interface Status { services: { name: string; ready: number; booting: number; claimed: number }[]; sessions: number; hosts: { id: string; instances: number }[] }

t.test('whole mesh: 2 agents, 3 routers; concurrent sessions pinned to their own instances from any router; pool refills; DELETE recycles', { skip: infraSkip('etcd', 'docker') }, async (t) => {
  const mesh = await startMesh({
    agents: 2,
    routers: 3,
    leaseTtlSec: 3,
    services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 3, maxPerHost: 8, bootTimeoutSec: 30, readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: '1' } }] },
  });
  t.teardown(async () => {
    // On failure, what the processes said (stderr: the CI log keeps it).
    if (!t.passing()) for (const p of [...mesh.agents, ...mesh.routers]) console.error(`--- ${p.name} (last 150 lines)\n${p.output.slice(-150).join('\n')}`);
    await mesh.stop();
  });
  const status = async (): Promise<Status> => JSON.parse((await mesh.cli('status', '--json')).stdout) as Status;
  await eventually(async () => (await status()).services[0]!.ready === 3, { timeoutMs: 60_000, intervalMs: 300, what: 'warm 3 ready' });

  // 8 sessions at once through 3 routers: more than are warm, so some wait for a boot.
  const N = 8;
  const created = await Promise.all(Array.from({ length: N }, async (_, i) => {
    const r = mesh.routers[i % 3]!;
    const res = await fetch(`${r.url}/v1/sessions?wait=60`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'chatbot' }) });
    t.equal(res.status, 201, `session ${i} created`);
    return (await res.json()) as { sessionId: string; instanceId: string };
  }));
  t.equal(new Set(created.map((c) => c.instanceId)).size, N, 'every session has its own instance');

  // Every session, through every router, reaches its own instance, which remembers it.
  for (const [i, s] of created.entries()) {
    for (let k = 0; k < 3; k++) {
      const r = mesh.routers[(i + k) % 3]!;
      const res = await fetch(`${r.url}/v1/sessions/${s.sessionId}/proxy/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: `turn ${k}` }] }),
      });
      const text = await res.text();
      t.equal(res.headers.get('x-instance-id'), s.instanceId, `session ${i} via ${r.name} pinned`, { status: res.status, body: text.slice(0, 500) });
      const body = JSON.parse(text) as { choices: { message: { content: string } }[] };
      if (k === 2) t.match(body.choices[0]!.message.content, /Turn 3/, `session ${i}: its instance remembers the conversation`);
    }
  }

  // The pool refills to warm 3 unclaimed on top of the claimed ones.
  await eventually(async () => { const s = (await status()).services[0]!; return s.ready === 3 && s.claimed === N; }, { timeoutMs: 60_000, intervalMs: 300, what: 'refilled' });
  t.pass('pool refilled: 3 ready + 8 claimed');
  const spread = (await status()).hosts;
  t.ok(spread.every((h) => h.instances >= 3), `replacements spread over both hosts (${spread.map((h) => `${h.id}:${h.instances}`).join(', ')})`);

  // Ending a session destroys its instance; its id answers 410 afterwards.
  const gone = created[0]!;
  const del = await fetch(`${mesh.routers[1]!.url}/v1/sessions/${gone.sessionId}`, { method: 'DELETE' });
  t.equal(del.status, 204);
  await eventually(async () => (await listContainersByLabel('warmpool.instance', gone.instanceId)).length === 0, { timeoutMs: 30_000, what: 'instance containers removed' });
  const after = await fetch(`${mesh.routers[2]!.url}/v1/sessions/${gone.sessionId}`);
  t.equal(after.status, 410, 'ended session: 410 from another router');
  await eventually(async () => { const s = (await status()).services[0]!; return s.ready === 3 && s.claimed === N - 1; }, { timeoutMs: 30_000, intervalMs: 300, what: 'one fewer claimed' });
  t.pass('instance recycled, pool stays warm');
});
