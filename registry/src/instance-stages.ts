import type { InstanceRecord, InstanceStages } from './types.js';

/**
 * The timed stages of an instance's start (issue 16): pull, container creation, boot to
 * ready, warm-up. Shared by `warmpool status`, the dashboard, the router's /metrics and the
 * wait queue's ETA, so all of them read the same figures from the instance records.
 */
export const STAGE_NAMES = ['pullMs', 'createMs', 'bootMs', 'warmupMs'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/** States of an instance that is starting (not yet claimable). */
const STARTING = new Set<string>(['pulling', 'booting', 'warming']);

export function isStarting(state: string): boolean {
  return STARTING.has(state);
}

/**
 * Slot taken to ready, in ms: the sum of the recorded stages, or bootMs alone for records
 * written by agents that did not record stages; null when the instance never became ready.
 */
export function startMs(i: Pick<InstanceRecord, 'bootMs' | 'stages'>): number | null {
  const st = i.stages;
  if (!st || typeof st.bootMs !== 'number') return typeof i.bootMs === 'number' ? i.bootMs : null;
  let total = 0;
  for (const k of STAGE_NAMES) total += typeof st[k] === 'number' ? st[k] : 0;
  return total;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export type TypicalStages = { [K in StageName]: number | null } & { startMs: number | null };

/** Median of each stage, and of the whole start, over the instances that recorded them (ms). */
export function typicalStages(instances: readonly Pick<InstanceRecord, 'bootMs' | 'stages'>[]): TypicalStages {
  const pick = (k: StageName): number | null => median(instances.map((i) => (k === 'bootMs' ? i.stages?.bootMs ?? i.bootMs : i.stages?.[k])).filter((v): v is number => typeof v === 'number'));
  return {
    pullMs: pick('pullMs'), createMs: pick('createMs'), bootMs: pick('bootMs'), warmupMs: pick('warmupMs'),
    startMs: median(instances.map(startMs).filter((v): v is number => typeof v === 'number' && v > 0)),
  };
}

/** The stages as a list of [name, ms] that were measured (for metrics and tables). */
export function measuredStages(st: InstanceStages | undefined): [StageName, number][] {
  if (!st) return [];
  return STAGE_NAMES.filter((k) => typeof st[k] === 'number').map((k) => [k, st[k] as number]);
}
