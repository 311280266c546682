import t from 'tap';
import { infraSkip, inCI, slowness } from '../src/index.js';
import { cleanupAll, defaultLogDir, runScenario } from './harness.js';
import { netnsAvailable } from './netns.js';
import { SCENARIOS } from './scenarios.js';

/**
 * The short scenarios of each test file running the short fault suite in CI, two per file
 * (faults-1-router ... faults-4-etcd-down-cutoff). tap runs files in alphabetical order, so
 * these come last: as two files of 2.5-3 minutes they were the lone last jobs of every CI
 * run; four files of about a minute and a half end together with the rest. Every short
 * scenario is in exactly one part (checked at start).
 */
export const SHORT_PARTS: readonly (readonly string[])[] = [
  ['baseline', 'kill-router'],
  ['kill-agent', 'kill-sidecar'],
  ['kill-app', 'kill-etcd-leader'],
  ['etcd-down', 'host-cutoff'],
];

/**
 * The short form of the fault suite (`npm run faults -- --short`) for part `part` of
 * SHORT_PARTS, one subtest per scenario, one fresh mesh each. The file asks tap for more
 * time than its default per-file timeout, stretched (as every wait of the harness) by the
 * machine's slowness at the start. Throws when SHORT_PARTS and the short scenarios differ.
 */
export async function shortFaultSuite(part: number): Promise<void> {
  const placed = SHORT_PARTS.flat();
  const short = SCENARIOS.filter((s) => s.short).map((s) => s.name);
  if (placed.length !== new Set(placed).size || short.some((n) => !placed.includes(n)) || placed.some((n) => !short.includes(n))) {
    throw new Error(`SHORT_PARTS (${placed.join(', ')}) must hold each short scenario once (${short.join(', ')})`);
  }
  const slow = slowness();
  t.setTimeout(8 * 60_000 * slow);

  const skip = infraSkip('etcd', 'docker');
  const netnsWhy = skip ? undefined : await netnsAvailable();
  // In CI a missing piece is a failure, never a silent skip.
  if (netnsWhy && inCI) throw new Error(`required infrastructure missing in CI: ${netnsWhy}`);

  // Killed from outside (tap's timeout, Ctrl-C): remove the mesh, its containers and the
  // network namespace before going.
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => { void cleanupAll().finally(() => process.exit(1)); });
  }

  for (const name of SHORT_PARTS[part] ?? []) {
    const sc = SCENARIOS.find((s) => s.name === name)!;
    const why = skip || (sc.netns && netnsWhy ? netnsWhy : false);
    t.test(`fault ${sc.name}: ${sc.summary}`, { skip: why, timeout: 4 * 60_000 * slow }, async (t) => {
      const r = await runScenario(sc, { profile: 'short', logDir: defaultLogDir, log: (m) => t.comment(m) });
      t.comment(JSON.stringify(r));
      t.notOk(r.error, 'the scenario ran to the end', { error: r.error });
      t.equal(r.doubleAssigned, 0, 'no instance held by two sessions at once (client view and every registry revision)', { details: r.details });
      t.equal(r.reused, 0, 'no instance handed to a second session (one instance, one session)', { details: r.details });
      t.equal(r.orphans, 0, 'no orphaned containers or records after recovery', { details: r.details });
      t.ok(r.served > 0, `the workload served sessions (${r.served} served, ${r.failed} failed)`);
      t.not(r.recoverySec, null, `the pool recovered and new sessions succeed (recoverySec ${r.recoverySec})`);
    });
  }
}
