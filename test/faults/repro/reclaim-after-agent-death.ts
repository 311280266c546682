import { chat, createSession, tinyMesh, untilReady } from './common.js';

/**
 * Bug: an instance whose session ended before its agent noticed the claim is claimable
 * again. The claim transaction only checks "no claim key" and the instance record's
 * revision; ending the session deletes the claim key, and until the agent rewrites the
 * record (claimed / draining) the instance looks ready. With the agent dead (kill -9), that
 * lasts until its host lease expires (10 s by default). The second session is handed the
 * used instance and its sidecar, pinned to the first session, answers 403.
 *
 *   node test/dist/faults/repro/reclaim-after-agent-death.js   (exit 1 = bug present)
 */
const mesh = await tinyMesh(10);
let bug = false;
try {
  const router = mesh.routers[0]!.url;
  await untilReady(mesh);
  await mesh.stopAgent(0, 'SIGKILL');
  const a = await createSession(router);
  console.log(`session A ${a.status} ${a.sessionId} on ${a.instanceId}: chat ${JSON.stringify(await chat(router, a.sessionId!))}`);
  console.log(`delete A: ${(await fetch(`${router}/v1/sessions/${a.sessionId}`, { method: 'DELETE' })).status}`);
  const b = await createSession(router, 1);
  const c = b.status === 201 ? await chat(router, b.sessionId!) : undefined;
  console.log(`session B ${b.status} ${b.sessionId ?? ''} on ${b.instanceId ?? '-'}: chat ${JSON.stringify(c)}`);
  bug = b.status === 201 && b.instanceId === a.instanceId;
  console.log(bug ? 'BUG: the instance of an ended session was handed to a second session' : 'ok: the used instance was not handed out again');
} finally {
  await mesh.stop();
}
process.exit(bug ? 1 : 0);
