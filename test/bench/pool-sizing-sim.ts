import { poissonQuantile, sizePool, type WarmPolicy } from '@warmpool/registry';
import { AUTO_POLICY, PERIODS, autoPolicy, makeTrace, type Arrival } from './pool-autoscale.js';
import { emit, round } from './stats.js';

/**
 * pool-sizing-sim: the pool-autoscale traces replayed against a simulated fleet (no etcd, no
 * Docker: every boot takes exactly `bootMs`, claims and boots are instant decisions), over
 * many seeds in seconds. It answers what the real benchmark cannot in 10 minutes: how much
 * of the hit ratio is lost to the sizing model, and how much to the trace itself. Runs per
 * seed: static pools, the demand-driven policy (the real `sizePool`, fed the arrivals and
 * boots it would read from the registry), and an oracle that sizes the pool with the same
 * Poisson quantile from the trace's true current rate (the best any sizing from a rate can
 * do; it cannot know a burst before it starts). The fleet mirrors the real bench: room for 24
 * instances, waiting sessions add slots, surplus ready instances are retired, booting ones
 * are not. Figures are per seed and averaged; the static runs are the baseline.
 *
 * args: [bootMs=4500] [seeds=17,1,2,3,4,5,6,7] [statics=2,4,6,8,10] [room=24] [policySec=15]
 * (room: instances the fleet can hold, claimed ones included; policySec: the policy's window
 * and cool-down, see AUTO_POLICY)
 */
export async function run(args: string[]): Promise<void> {
  const bootMs = Number(args[0] ?? 4500);
  const seeds = (args[1] ?? '17,1,2,3,4,5,6,7').split(',').map(Number);
  const statics = (args[2] ?? '2,4,6,8,10').split(',').map(Number);
  const room = Number(args[3] ?? CAPACITY);
  const policy = autoPolicy(Number(args[4] ?? AUTO_POLICY.windowSec));
  const runs = new Map<string, Outcome[]>();
  const add = (name: string, o: Outcome): void => { runs.set(name, [...(runs.get(name) ?? []), o]); };
  for (const seed of seeds) {
    const trace = makeTrace(seed);
    const row: Record<string, string> = {};
    for (const warm of statics) add(`static-${warm}`, simulate(trace, bootMs, () => warm, warm, room));
    add('auto', simulate(trace, bootMs, (now, arrivals, boots) => sizePool({ policy, arrivals, boots, now }).size, policy.min, room));
    add('oracle', simulate(trace, bootMs, (now) => oracleSize(policy, now, bootMs), policy.min, room));
    for (const [name, outcomes] of runs) row[name] = `${outcomes.at(-1)!.hitRatio}/${outcomes.at(-1)!.idleInstanceSec}`;
    emit({ bench: 'pool-sizing-sim', seed, arrivals: trace.length, 'hitRatio/idleInstanceSec': row });
  }
  const mean = (name: string, k: keyof Outcome): number => {
    const o = runs.get(name)!;
    return round(o.reduce((a, x) => a + x[k], 0) / o.length, 3);
  };
  const min = (name: string): number => Math.min(...runs.get(name)!.map((o) => o.hitRatio));
  emit({
    bench: 'pool-sizing-sim', bootMs, seeds, room, policy,
    autoHitRatioMean: mean('auto', 'hitRatio'), autoHitRatioMin: min('auto'), autoIdleInstanceSecMean: mean('auto', 'idleInstanceSec'),
    oracleHitRatioMean: mean('oracle', 'hitRatio'), oracleHitRatioMin: min('oracle'), oracleIdleInstanceSecMean: mean('oracle', 'idleInstanceSec'),
    staticRuns: statics.map((warm) => ({ warm, hitRatioMean: mean(`static-${warm}`, 'hitRatio'), hitRatioMin: min(`static-${warm}`), idleInstanceSecMean: mean(`static-${warm}`, 'idleInstanceSec') })),
  });
}

interface Outcome { hitRatio: number; idleInstanceSec: number }
interface SimInstance { readyAt: number; until?: number }

const STEP_MS = 100;
const CAPACITY = 24;

/** The policy's size from the trace's true rate at `now` (same quantile, min and max). */
function oracleSize(policy: WarmPolicy, now: number, bootMs: number): number {
  let start = 0;
  let rate = PERIODS.at(-1)!.rate;
  for (const p of PERIODS) {
    if (now < start + p.sec * 1000) { rate = p.rate; break; }
    start += p.sec * 1000;
  }
  return Math.min(policy.max, Math.max(policy.min, 1 + poissonQuantile((rate * bootMs) / 1000, policy.target)));
}

/**
 * Replays `trace` (times from 0) in steps of 100 ms: arrivals claim a ready instance (a hit)
 * or wait in FIFO order; the pool keeps size(now) + waiting unclaimed instances, ready or
 * booting, within the room (24 as in the real bench). Returns the hit ratio and idle (ready, unclaimed)
 * instance-seconds.
 */
function simulate(
  trace: Arrival[], bootMs: number,
  size: (now: number, arrivals: number[], boots: { at: number; ms: number }[]) => number, initial: number, room = CAPACITY,
): Outcome {
  const end = PERIODS.reduce((a, p) => a + p.sec * 1000, 0) + 5_000;
  let insts: SimInstance[] = Array.from({ length: initial }, () => ({ readyAt: 0 }));
  const arrivals: number[] = [];
  const boots: { at: number; ms: number }[] = [];
  const waiting: Arrival[] = [];
  let next = 0;
  let hits = 0;
  let idleMs = 0;
  const readyFree = (t: number): SimInstance | undefined => insts.find((i) => i.until === undefined && i.readyAt <= t);
  for (let t = 0; t < end; t += STEP_MS) {
    insts = insts.filter((i) => i.until === undefined || i.until > t);
    for (; next < trace.length && trace[next]!.at <= t; next++) {
      const a = trace[next]!;
      arrivals.push(t);
      const free = readyFree(t);
      if (free) { hits++; free.until = t + a.holdMs; } else waiting.push(a);
    }
    for (let free = readyFree(t); free && waiting.length; free = readyFree(t)) free.until = t + waiting.shift()!.holdMs;
    const slots = size(t, arrivals, boots.filter((b) => b.at <= t)) + waiting.length;
    const unclaimed = insts.filter((i) => i.until === undefined);
    for (let n = unclaimed.length; n < slots && insts.length < room; n++) {
      insts.push({ readyAt: t + bootMs });
      boots.push({ at: t + bootMs, ms: bootMs });
    }
    let surplus = unclaimed.length - slots;
    if (surplus > 0) insts = insts.filter((i) => !(i.until === undefined && i.readyAt <= t && surplus-- > 0));
    idleMs += insts.filter((i) => i.until === undefined && i.readyAt <= t).length * STEP_MS;
  }
  return { hitRatio: round(hits / trace.length, 3), idleInstanceSec: round(idleMs / 1000, 1) };
}
