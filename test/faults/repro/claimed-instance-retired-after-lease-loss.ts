import { startMesh } from '../../src/index.js';
import { chat, createSession, sleep } from './common.js';

/**
 * Bug: an agent whose host lease was lost (etcd outage, partition, or the agent stalled for
 * longer than the TTL) re-puts its warm slots when it recovers; a slot that a claim consumed
 * meanwhile and another host then took is reported as 'slot-lost', and the agent retires the
 * instance that held it, even though that instance is now claimed and serving a session:
 * the session is ended ("instance-gone") and its healthy instance destroyed.
 *
 * Here the agent holding the ready instance is stopped (SIGSTOP) through a short etcd
 * outage; right after etcd is back a session claims that instance, the other host takes the
 * freed slot, then the agent runs again. Timing-dependent: the agent must recover its lease
 * before its watch shows it the claim (what happened in `npm run faults -- etcd-down`).
 *
 *   node test/dist/faults/repro/claimed-instance-retired-after-lease-loss.js   (exit 1 = bug present)
 */
const ttl = 3;
const mesh = await startMesh({
  agents: 2, routers: 1, leaseTtlSec: ttl,
  services: { services: [{ name: 'chatbot', image: 'warmpool/chatbot-demo', warm: 1, maxPerHost: 4, bootTimeoutSec: 30, readiness: { intervalMs: 200 }, env: { BOOT_SECONDS: '1' } }] },
});
let bug = false;
try {
  const router = mesh.routers[0]!.url;
  // Wait for the one warm instance and find its host.
  let host = -1;
  for (let i = 0; i < 300 && host < 0; i++) {
    const out = await mesh.etcd.etcdctl('get', '--prefix', `${mesh.prefix}instances/`, '--print-value-only').catch(() => '');
    const ready = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { host: string; state: string }).find((r) => r.state === 'ready');
    if (ready) host = ready.host === 'host-1' ? 0 : 1;
    else await sleep(200);
  }
  if (host < 0) throw new Error('no ready instance');
  const agent = mesh.agents[host]!.proc!;
  // The agent stalls through an etcd outage; etcd comes back and a session claims the
  // agent's ready instance before the agent runs again; the other host takes the freed slot.
  agent.kill('SIGSTOP');
  await mesh.etcd.stopMember('n1', 'SIGKILL');
  await sleep(2 * ttl * 1000);
  await mesh.etcd.startMember('n1');
  let s: Awaited<ReturnType<typeof createSession>> | undefined;
  for (let i = 0; i < 100 && s?.status !== 201; i++) { s = await createSession(router, 2).catch(() => undefined); if (s?.status !== 201) await sleep(100); }
  if (s?.status !== 201) throw new Error('no session after the outage');
  console.log(`session ${s.sessionId} on ${s.instanceId} (host-${host + 1}, whose agent is stopped): ${JSON.stringify(await chat(router, s.sessionId!))}`);
  await sleep(2 * ttl * 1000);
  agent.kill('SIGCONT');
  await sleep(8_000);
  const after = await chat(router, s.sessionId!);
  console.log(`after the agent resumed: ${JSON.stringify(after)}`);
  const lines = mesh.agents[host]!.output.filter((l) => /slot taken by another host|session ended by the agent|lease/.test(l)).map((l) => l.slice(0, 240));
  console.log(lines.join('\n'));
  bug = after.status !== 200;
  console.log(bug ? 'BUG: a healthy, claimed instance was retired and its live session ended' : 'ok: the session survived its agent\'s lease loss');
} finally {
  await mesh.stop();
}
process.exit(bug ? 1 : 0);
