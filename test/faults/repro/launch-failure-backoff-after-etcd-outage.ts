import { createSession, sleep, tinyMesh, untilReady } from './common.js';

/**
 * Bug: a registry outage during an instance launch is charged to the service as a failed
 * instance ("launch failed: ... registry unavailable", deadIsFailure), so the per-service
 * backoff grows while etcd is down, and the host waits it out after etcd is back even though
 * the image is fine. Seen in `npm run faults -- etcd-down`: "failures":7, "backoffMs":76559.
 *
 * A session takes the only warm instance; etcd is killed while the agent launches the
 * replacement; etcd is back 10 s later.
 *
 *   node test/dist/faults/repro/launch-failure-backoff-after-etcd-outage.js   (exit 1 = bug present)
 */
const mesh = await tinyMesh(3);
let bug = false;
try {
  const router = mesh.routers[0]!.url;
  await untilReady(mesh);
  const s = await createSession(router);
  // The agent takes the freed slot and starts the replacement's containers (~1 s): cut etcd now.
  await sleep(150);
  await mesh.etcd.stopMember('n1', 'SIGKILL');
  await sleep(10_000);
  await mesh.etcd.startMember('n1');
  await sleep(8_000);
  const lines = mesh.agents[0]!.output.filter((l) => l.includes('"msg":"instance failed; backing off"'));
  for (const l of lines) {
    const m = /"reason":"([^"]{0,120})[^"]*".*"failures":(\d+),"backoffMs":(\d+)/.exec(l);
    console.log(m ? `backing off ${m[3]} ms after failure ${m[2]}: ${m[1]}` : l.slice(0, 300));
  }
  bug = lines.some((l) => /registry unavailable|lease not found/.test(l));
  console.log(`session ${s.sessionId?.slice(0, 8)}; ${bug ? 'BUG: a registry outage counted as an instance failure (service backoff)' : 'ok: no backoff charged for the registry outage'}`);
} finally {
  await mesh.stop();
}
process.exit(bug ? 1 : 0);
