import { createSession, pool, sleep, tinyMesh, untilReady } from './common.js';

/**
 * Bug: after an etcd outage longer than the host lease TTL, HostSession.recover() re-puts
 * every warm slot it held with an "absent" compare. A slot that a claim deleted while the
 * agent was still recovering is absent, so it is put back, on the live host lease, naming
 * the now-claimed instance. When that session ends the instance is destroyed but the slot
 * key stays: the fleet counts the slot as held and never refills it (ready 0 of warm 1 here,
 * for as long as the agent lives).
 *
 *   node test/dist/faults/repro/slot-leak-after-etcd-outage.js   (exit 1 = bug present)
 */
const mesh = await tinyMesh(3);
let bug = false;
try {
  const router = mesh.routers[0]!.url;
  await untilReady(mesh);
  await mesh.etcd.stopMember('n1', 'SIGKILL');
  await sleep(10_000);
  await mesh.etcd.startMember('n1');
  // Claim at once: the agent re-grants its lease with a backoff of up to 5 s.
  let s: Awaited<ReturnType<typeof createSession>> | undefined;
  const until = Date.now() + 20_000;
  while (Date.now() < until && s?.status !== 201) { s = await createSession(router).catch(() => undefined); if (s?.status !== 201) await sleep(100); }
  console.log(`claimed ${s?.instanceId} right after etcd came back`);
  await sleep(6_000);
  console.log(`delete: ${(await fetch(`${router}/v1/sessions/${s?.sessionId}`, { method: 'DELETE' })).status}`);
  await sleep(15_000);
  const slots = (await mesh.etcd.etcdctl('get', '--prefix', `${mesh.prefix}slots/`, '--print-value-only')).trim();
  const instances = (await mesh.etcd.etcdctl('get', '--prefix', `${mesh.prefix}instances/`, '--keys-only')).trim();
  const p = await pool(mesh);
  console.log(`15 s after the delete: slots ${slots || '(none)'}; instance keys ${instances || '(none)'}; pool ${JSON.stringify(p)}`);
  bug = p.ready + p.booting < p.target && slots.includes(s?.instanceId ?? '?');
  console.log(bug ? 'BUG: a warm slot is held by a destroyed instance; the pool is not refilled' : 'ok: the pool refilled');
} finally {
  await mesh.stop();
}
process.exit(bug ? 1 : 0);
