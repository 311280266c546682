import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ServiceSpec } from '@warmpool/registry';
import { AGENT_SOCKET_NAME, RUN_DIR_IN_CONTAINER, SIDECAR_ENV as E } from '@warmpool/sidecar/protocol';
import type { ContainerCreateSpec } from './docker.js';
import type { HostGrant } from './host-policy.js';
import { LABEL, containerName } from './labels.js';

/** What of a ServiceSpec shapes its containers: a change replaces unclaimed instances. */
export function specHash(spec: ServiceSpec): string {
  const relevant: Record<string, unknown> = {
    image: spec.image, containerPort: spec.containerPort, env: spec.env, resources: { memoryMb: spec.resources.memoryMb, cpus: spec.resources.cpus },
    readiness: spec.readiness, bootTimeoutSec: spec.bootTimeoutSec,
    // Only when set: specs without them keep the hash they had before these fields existed.
    ...(spec.liveness ? { liveness: spec.liveness } : {}),
    ...(spec.warmup?.length ? { warmup: spec.warmup } : {}),
  };
  // Container options count only when set: specs without them keep the hash they had
  // before the options existed (no replacement of every instance on an upgrade).
  const options: Record<string, unknown> = {
    gpus: spec.resources.gpus || undefined, command: spec.command, entrypoint: spec.entrypoint,
    volumes: spec.volumes?.length ? spec.volumes : undefined, shmSizeMb: spec.shmSizeMb, ipc: spec.ipc,
    ulimits: spec.ulimits && Object.keys(spec.ulimits).length ? spec.ulimits : undefined, user: spec.user,
    secretEnv: spec.secretEnv && Object.keys(spec.secretEnv).length ? spec.secretEnv : undefined,
  };
  for (const [k, v] of Object.entries(options)) if (v !== undefined) relevant[k] = v;
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
  /** What this host granted of the spec's container options (host-policy.ts); none when absent. */
  grant?: HostGrant;
  /** GPU ids the planner gave this instance. */
  gpus?: readonly string[];
  /** Docker network the pod joins (default: the engine's default bridge). */
  network?: string;
  /** Seconds added to the sidecar's boot timeout for the engine calls between its start and the app's. */
  startSlackSec?: number;
}

export function podLabels(p: PodInput, role: 'app' | 'sidecar'): Record<string, string> {
  return {
    [LABEL.cluster]: p.cluster, [LABEL.service]: p.spec.name, [LABEL.instance]: p.instanceId, [LABEL.host]: p.hostId,
    [LABEL.role]: role, [LABEL.slot]: String(p.slot), [LABEL.spec]: specHash(p.spec),
    ...(p.gpus?.length ? { [LABEL.gpus]: p.gpus.join(',') } : {}),
  };
}

/** The sidecar's port inside the pod: the configured one, unless the app already uses it. */
export function podSidecarPort(configured: number, appPort: number): number {
  return configured === appPort ? configured + 1 : configured;
}

/**
 * The app container: the service's image with its env, limits, container options and labels,
 * in the network namespace of its pod (the sidecar's, filtered before the app starts: only
 * the sidecar's port takes connections from outside). It publishes nothing. Volumes and secret
 * values come from the host's grant (host-policy.ts), never straight from the spec.
 */
export function appContainerSpec(p: PodInput, podContainerId?: string): ContainerCreateSpec {
  const s = p.spec;
  const ulimits = Object.entries(s.ulimits ?? {}).map(([name, u]) => ({ name, soft: u.soft, hard: u.hard }));
  return {
    name: containerName(p.cluster, p.instanceId, 'app'),
    image: s.image,
    env: { HOST: '127.0.0.1', ...s.env, ...p.grant?.secretEnv, INSTANCE_ID: p.instanceId, PORT: String(s.containerPort) },
    labels: podLabels(p, 'app'),
    memoryBytes: s.resources.memoryMb > 0 ? s.resources.memoryMb * 1024 * 1024 : 0,
    nanoCpus: s.resources.cpus > 0 ? Math.round(s.resources.cpus * 1e9) : 0,
    ...(podContainerId ? { networkOfContainer: podContainerId } : {}),
    ...(s.command ? { cmd: s.command } : {}),
    ...(s.entrypoint ? { entrypoint: s.entrypoint } : {}),
    ...(s.user ? { user: s.user } : {}),
    ...(p.grant?.volumes.length ? { volumes: p.grant.volumes } : {}),
    ...(s.shmSizeMb ? { shmSizeBytes: s.shmSizeMb * 1024 * 1024 } : {}),
    ...(s.ipc ? { ipcMode: s.ipc } : {}),
    ...(ulimits.length ? { ulimits } : {}),
    ...(p.gpus?.length ? { gpuDeviceIds: [...p.gpus] } : {}),
  };
}

/**
 * Probe and warm-up settings of the sidecar (only the ones the spec sets: defaults stay the
 * sidecar's). `warmupHeaders` (the host's grant) adds the secret header values, per warm-up
 * request: they reach only this container's env on this host, never the registry.
 */
export function healthEnv(s: ServiceSpec, warmupHeaders?: readonly Record<string, string>[]): Record<string, string> {
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
    env[E.warmup] = JSON.stringify(s.warmup.map((w, i) => {
      const json = w.body !== undefined && typeof w.body !== 'string';
      const headers = { ...(json ? { 'content-type': 'application/json' } : {}), ...w.headers, ...warmupHeaders?.[i] };
      return {
        method: w.method, path: w.path, headers, timeoutMs: Math.round(w.timeoutSec * 1000), expectStatus: w.expectStatus,
        ...(w.body !== undefined ? { body: json ? JSON.stringify(w.body) : w.body } : {}),
      };
    }));
  }
  return env;
}

/**
 * The sidecar container: it owns the pod's network namespace (the app joins it) and publishes
 * its port there; it reports over the agent's socket. Its boot clock starts with its own
 * process, just before the namespace is filtered and the app is started, so its boot timeout
 * is the service's plus `p.startSlackSec` (the bound on those two engine calls): the agent's
 * own boot deadline, counted from the engine's start time of the app container, is the one
 * that decides (issue 13.6); the sidecar's is a backstop.
 */
export function sidecarContainerSpec(p: PodInput): ContainerCreateSpec {
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
      [E.bootTimeoutSec]: String(s.bootTimeoutSec + (p.startSlackSec ?? 0)),
      [E.failureThreshold]: String(s.readiness.failureThreshold),
      [E.agentSocket]: path.posix.join(RUN_DIR_IN_CONTAINER, AGENT_SOCKET_NAME),
      ...healthEnv(s, p.grant?.warmupHeaders),
    },
    labels: podLabels(p, 'sidecar'),
    publish: { containerPort: podSidecarPort(p.sidecarPort, s.containerPort), hostIp: p.publishIp },
    ...(p.network ? { network: p.network } : {}),
    binds: { [p.runDir]: RUN_DIR_IN_CONTAINER },
  };
}
