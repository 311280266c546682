import { constants } from 'node:os';
import type { ContainerDetails } from './docker.js';
import { AgentError } from './errors.js';

/**
 * Telling the host's faults from the app's (issue 13.6 and 13.7): an engine too slow to
 * create a container, or a full disk, says nothing about the service's image, so it must not
 * grow the service's crash backoff; and a container's death is named by what the engine
 * knows (OOM kill, exit code, signal), not by whichever symptom was noticed first.
 */

/** Errors of the engine that are the host's fault (resources, not the service's image or settings). */
const HOST_RESOURCE = /no space left on device|disk quota exceeded|too many open files|cannot allocate memory|resource temporarily unavailable|device or resource busy/i;

/**
 * Runs one engine call with a deadline. Past it, the call is reported as a host fault
 * (WARMPOOL_ENGINE_TIMEOUT, retryable); if it completes later anyway, `onLate` receives its
 * result (e.g. to remove a container created too late to be used).
 */
export function withDeadline<T>(what: string, ms: number, run: () => Promise<T>, onLate?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new AgentError('WARMPOOL_ENGINE_TIMEOUT', `${what}: the Docker engine did not finish within ${ms / 1000} s`, { retryable: true }));
    }, ms);
    run().then((v) => {
      clearTimeout(timer);
      if (late) onLate?.(v);
      else resolve(v);
    }, (err: unknown) => {
      clearTimeout(timer);
      if (!late) reject(err as Error);
    });
  });
}

/** Why a failed engine call is the host's fault, or undefined when it may be the service's. */
export function hostFaultOf(err: unknown): string | undefined {
  if (!AgentError.is(err)) return undefined;
  if (err.code === 'WARMPOOL_ENGINE_TIMEOUT') return 'engine too slow';
  if (err.code === 'WARMPOOL_DOCKER_UNAVAILABLE') return 'engine unreachable';
  if (HOST_RESOURCE.test(err.message)) return 'host out of resources';
  return undefined;
}

function signalName(n: number): string | undefined {
  for (const [name, num] of Object.entries(constants.signals)) if (num === n) return name;
  return undefined;
}

/**
 * The engine's account of a stopped container, e.g. "app container ran out of memory
 * (OOM-killed, exit code 137)", "app container was killed by SIGKILL (exit code 137)",
 * "app container exited with code 3"; undefined while it runs or when it is gone.
 * Exit codes above 128 are 128 + the signal number (the shell / runc convention).
 */
export function exitReason(role: string, d: ContainerDetails | undefined): string | undefined {
  if (!d || d.running || d.exitCode === null) return undefined;
  const code = d.exitCode;
  if (d.oomKilled) return `${role} container ran out of memory (OOM-killed, exit code ${code})`;
  const sig = code > 128 ? signalName(code - 128) : undefined;
  if (sig) return `${role} container was killed by ${sig} (exit code ${code})`;
  return `${role} container exited with code ${code}${d.error ? `: ${d.error}` : ''}`;
}
