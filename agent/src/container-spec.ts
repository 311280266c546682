import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ServiceSpec } from '@warmpool/registry';
import { AGENT_SOCKET_NAME, RUN_DIR_IN_CONTAINER, SIDECAR_ENV as E } from '@warmpool/sidecar/protocol';
import type { ContainerCreateSpec } from './docker.js';
import { LABEL, containerName } from './labels.js';

/** What of a ServiceSpec shapes its containers: a change replaces unclaimed instances. */
export function specHash(spec: ServiceSpec): string {
  const relevant = {
    image: spec.image, containerPort: spec.containerPort, env: spec.env, resources: spec.resources,
    readiness: spec.readiness, bootTimeoutSec: spec.bootTimeoutSec,
    // Only when set: specs without them keep the hash they had before these fields existed.
    ...(spec.liveness ? { liveness: spec.liveness } : {}),
    ...(spec.warmup?.length ? { warmup: spec.warmup } : {}),
  };
  return createHash('sha256').update(stableJson(relevant)).digest('hex').slice(0, 12);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export interface PodInput {
  cluster: string;
  hostId: string;
  instanceId: string;
  slot: number;
  spec: ServiceSpec;
  /** IP the sidecar's port is published on (the host's advertised address). */
  publishIp: string;
  sidecarImage: string;
  /** Port the sidecar listens on inside the pod (never the app's port). */
  sidecarPort: number;
  /** Host directory holding the agent's socket; mounted into the sidecar. */
  runDir: string;
  /** instanceKey(clusterSecret, instanceId). */
  instanceKey: string;
}

export function podLabels(p: PodInput, role: 'app' | 'sidecar'): Record<string, string> {
  return {
    [LABEL.cluster]: p.cluster, [LABEL.service]: p.spec.name, [LABEL.instance]: p.instanceId, [LABEL.host]: p.hostId,
    [LABEL.role]: role, [LABEL.slot]: String(p.slot), [LABEL.spec]: specHash(p.spec),
  };
}

/** The sidecar's port inside the pod: the configured one, unless the app already uses it. */
export function podSidecarPort(configured: number, appPort: number): number {
  return configured === appPort ? configured + 1 : configured;
}

/**
 * The app container: the service's image with its env, limits and labels. Its own port is
 * never published: the only way in is the sidecar's port, published here because the
 * sidecar joins this container's network namespace.
 */
export function appContainerSpec(p: PodInput): ContainerCreateSpec {
  const s = p.spec;
  return {
    name: containerName(p.cluster, p.instanceId, 'app'),
    image: s.image,
    env: { HOST: '127.0.0.1', ...s.env, INSTANCE_ID: p.instanceId, PORT: String(s.containerPort) },
    labels: podLabels(p, 'app'),
    memoryBytes: s.resources.memoryMb > 0 ? s.resources.memoryMb * 1024 * 1024 : 0,
    nanoCpus: s.resources.cpus > 0 ? Math.round(s.resources.cpus * 1e9) : 0,
    publish: { containerPort: podSidecarPort(p.sidecarPort, s.containerPort), hostIp: p.publishIp },
  };
}

/** Probe and warm-up settings of the sidecar (only the ones the spec sets: defaults stay the sidecar's). */
export function healthEnv(s: ServiceSpec): Record<string, string> {
  const env: Record<string, string> = {};
  if (s.readiness.timeoutMs !== undefined) env[E.probeTimeoutMs] = String(s.readiness.timeoutMs);
  if (s.liveness) {
    env[E.livePath] = s.liveness.path;
    env[E.liveStatus] = String(s.liveness.expectStatus);
    env[E.liveIntervalMs] = String(s.liveness.intervalMs);
    env[E.liveTimeoutMs] = String(s.liveness.timeoutMs);
    env[E.liveFailureThreshold] = String(s.liveness.failureThreshold);
  }
  if (s.warmup?.length) {
    env[E.warmup] = JSON.stringify(s.warmup.map((w) => {
      const json = w.body !== undefined && typeof w.body !== 'string';
      const headers = { ...(json ? { 'content-type': 'application/json' } : {}), ...w.headers };
      return {
        method: w.method, path: w.path, headers, timeoutMs: Math.round(w.timeoutSec * 1000), expectStatus: w.expectStatus,
        ...(w.body !== undefined ? { body: json ? JSON.stringify(w.body) : w.body } : {}),
      };
    }));
  }
  return env;
}

/**
 * The sidecar container, in the app's network namespace, reporting over the agent's socket.
 * Its boot clock starts with its own process, after the app container started: the agent
 * measures the app's boot from the engine's start time of the app container (issue 13.6).
 */
export function sidecarContainerSpec(p: PodInput, appContainerId: string): ContainerCreateSpec {
  const s = p.spec;
  return {
    name: containerName(p.cluster, p.instanceId, 'sidecar'),
    image: p.sidecarImage,
    env: {
      [E.instanceId]: p.instanceId,
      [E.instanceKey]: p.instanceKey,
      [E.listenHost]: '0.0.0.0',
      [E.listenPort]: String(podSidecarPort(p.sidecarPort, s.containerPort)),
      [E.appHost]: '127.0.0.1',
      [E.appPort]: String(s.containerPort),
      [E.readyPath]: s.readiness.path,
      [E.readyStatus]: String(s.readiness.expectStatus),
      [E.probeIntervalMs]: String(s.readiness.intervalMs),
      [E.bootTimeoutSec]: String(s.bootTimeoutSec),
      [E.failureThreshold]: String(s.readiness.failureThreshold),
      [E.agentSocket]: path.posix.join(RUN_DIR_IN_CONTAINER, AGENT_SOCKET_NAME),
      ...healthEnv(s),
    },
    labels: podLabels(p, 'sidecar'),
    networkOfContainer: appContainerId,
    binds: { [p.runDir]: RUN_DIR_IN_CONTAINER },
  };
}
