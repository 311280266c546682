import type { InstanceRecord } from '@warmpool/registry';
import type { SidecarStatus } from '@warmpool/sidecar/protocol';
import type { ContainerSummary } from './docker.js';
import { LABEL } from './labels.js';
import type { Phase } from './plan.js';

/** One instance's containers found on this host at start-up, with what the registry and its sidecar say. */
export interface AdoptionCandidate {
  instanceId: string;
  service: string;
  app?: ContainerSummary;
  sidecar?: ContainerSummary;
  /** The instance's record, if it is still in the registry (the agent restarted within the lease TTL). */
  record?: InstanceRecord;
  /** Session claiming the instance, if any. */
  claimSession?: string;
  /** The sidecar's own view (GET /_warmpool/status through the published port); undefined if it did not answer. */
  status?: SidecarStatus;
  serviceExists: boolean;
}

export type AdoptionDecision =
  | { adopt: true; phase: Phase; slot: number | null; sessionId?: string }
  | { adopt: false; reason: string; endSession?: string };

/**
 * Whether a restarted agent takes an instance back (same containers, same id) or removes
 * it. Pure; the agent then re-puts the record on its new lease and, for an unclaimed
 * instance, re-takes its warm slot (which may fail: then the instance is removed too).
 */
export function decideAdoption(c: AdoptionCandidate): AdoptionDecision {
  if (!c.app?.running || !c.sidecar?.running) {
    return { adopt: false, reason: `container ${!c.app?.running ? 'app' : 'sidecar'} is gone or stopped`, ...(c.claimSession ? { endSession: c.claimSession } : {}) };
  }
  if (c.status && (c.status.state === 'failed' || c.status.state === 'unhealthy')) {
    return { adopt: false, reason: `sidecar reports ${c.status.state}: ${c.status.reason ?? ''}`.trim(), ...(c.claimSession ? { endSession: c.claimSession } : {}) };
  }
  if (c.claimSession) return { adopt: true, phase: 'claimed', slot: null, sessionId: c.claimSession };
  if (c.record?.state === 'claimed') return { adopt: false, reason: 'its session ended while the agent was away' };
  if (c.status?.sessionPinned) return { adopt: false, reason: 'already served a session that has ended' };
  if (!c.serviceExists) return { adopt: false, reason: 'service removed' };
  const label = c.app.labels[LABEL.slot];
  const slot = c.record ? c.record.slot : label !== undefined && /^\d+$/.test(label) ? Number(label) : null;
  if (slot === null) return { adopt: false, reason: 'holds no warm slot' };
  return { adopt: true, phase: c.status?.state === 'ready' ? 'ready' : 'booting', slot };
}
