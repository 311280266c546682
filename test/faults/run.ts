import { infraMissing } from '../src/index.js';
import { cleanupAll, defaultLogDir, emptyResult, runScenario, type ScenarioResult } from './harness.js';
import { table, verdict } from './report.js';
import { netnsAvailable } from './netns.js';
import { SCENARIOS } from './scenarios.js';

/**
 * `npm run faults [-- --short] [SCENARIO...]`: each scenario starts a fresh local mesh,
 * runs a workload of concurrent sessions, injects its fault mid-workload and measures.
 * One JSON line per scenario on stdout, then a table. Exit 1 if any scenario double-assigned
 * an instance, left orphans, reused an instance, or could not run. docs/faults.md.
 */

const USAGE = `usage: npm run faults -- [--short] [--list] [SCENARIO...]
  --short   the CI form: fewer clients, shorter phases (only scenarios marked short)
  --list    list the scenarios and exit
scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`;

async function main(argv: string[]): Promise<number> {
  const flags = argv.filter((a) => a.startsWith('-'));
  const names = argv.filter((a) => !a.startsWith('-'));
  for (const f of flags) if (!['--short', '--list', '--help', '-h'].includes(f)) { process.stderr.write(`unknown flag ${f}\n${USAGE}\n`); return 2; }
  if (flags.includes('--help') || flags.includes('-h')) { process.stdout.write(`${USAGE}\n`); return 0; }
  if (flags.includes('--list')) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(18)} ${s.short ? '[short] ' : '        '}${s.summary}\n`);
    return 0;
  }
  const short = flags.includes('--short');
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) { process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}\n${USAGE}\n`); return 2; }
  const chosen = names.length ? SCENARIOS.filter((s) => names.includes(s.name)) : SCENARIOS.filter((s) => !short || s.short);

  for (const what of ['etcd', 'docker'] as const) {
    const why = infraMissing(what);
    if (why) { process.stderr.write(`faults: ${why}\n`); return 2; }
  }
  const log = (m: string): void => { process.stderr.write(`${m}\n`); };
  const results: ScenarioResult[] = [];
  for (const sc of chosen) {
    if (sc.netns) {
      const why = await netnsAvailable();
      if (why) {
        // No fallback that would pretend to be the real thing: the scenario reports why it did not run.
        const r: ScenarioResult = { ...emptyResult(sc, short ? 'short' : 'full'), orphans: -1, error: `not run: ${why}` };
        results.push(r);
        process.stdout.write(`${JSON.stringify(r)}\n`);
        continue;
      }
    }
    log(`faults: ${sc.name}: ${sc.summary}`);
    const r = await runScenario(sc, { profile: short ? 'short' : 'full', logDir: defaultLogDir, log });
    results.push(r);
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }
  process.stdout.write(`\n${table(results)}\n`);
  const bad = results.filter((r) => verdict(r).length);
  for (const r of bad) process.stdout.write(`${r.scenario}: ${verdict(r).join('; ')}\n`);
  process.stdout.write(`process logs: ${defaultLogDir}/SCENARIO.log\n`);
  return bad.length ? 1 : 0;
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`faults: ${sig}: cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

const code = await main(process.argv.slice(2)).catch(async (err: unknown) => {
  process.stderr.write(`faults: ${(err as Error).stack ?? String(err)}\n`);
  await cleanupAll();
  return 1;
});
// Clients (etcd, fetch pools) must not keep the process alive.
process.exit(code);
