import { SidecarError } from './errors.js';
import { SIDECAR_ENV as E } from './protocol.js';

export interface ReadinessOptions {
  /** Path probed on the app (GET). */
  path: string;
  /** Status that means ready; anything else (or no answer) means not ready. */
  expectStatus: number;
  intervalMs: number;
  /** Each probe is abandoned after this long. */
  timeoutMs: number;
  /** Not ready this long after start: failed (the agent replaces the instance). */
  bootTimeoutMs: number;
  /** Consecutive failed probes after ready that make the instance unhealthy. */
  failureThreshold: number;
}

/** Everything a sidecar needs; `sidecarOptionsFromEnv` builds it from the container's env. */
export interface SidecarConfig {
  instanceId: string;
  /** instanceKey(clusterSecret, instanceId), handed over by the agent. */
  instanceKey: string;
  listen: { host: string; port: number };
  /** keepAliveMs: idle kept-alive connections to the app close after this long (Forwarder). */
  app: { host: string; port: number; keepAliveMs?: number };
  readiness: ReadinessOptions;
  /** The agent's unix socket; without it the sidecar reports to nobody (plain process use). */
  agentSocket?: string;
  /** Epoch ms the app was started (boot time is measured from here); default: sidecar start. */
  startedAt?: number;
}

export const SIDECAR_DEFAULTS = {
  listenHost: '0.0.0.0',
  listenPort: 9000,
  appHost: '127.0.0.1',
  appPort: 8000,
  readyPath: '/health',
  readyStatus: 200,
  probeIntervalMs: 1000,
  probeTimeoutMs: 2000,
  bootTimeoutSec: 600,
  failureThreshold: 3,
} as const;

function int(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new SidecarError('WARMPOOL_INVALID_CONFIG', `${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

function num(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new SidecarError('WARMPOOL_INVALID_CONFIG', `${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

function required(env: Record<string, string | undefined>, name: string): string {
  const v = env[name];
  if (!v) throw new SidecarError('WARMPOOL_INVALID_CONFIG', `${name} is required`);
  return v;
}

/** Reads the sidecar's configuration from WARMPOOL_* variables (see sidecar/README.md). */
export function sidecarConfigFromEnv(env: Record<string, string | undefined>): SidecarConfig {
  const d = SIDECAR_DEFAULTS;
  const path = env[E.readyPath] || d.readyPath;
  if (!path.startsWith('/')) throw new SidecarError('WARMPOOL_INVALID_CONFIG', `${E.readyPath} must start with /, got ${JSON.stringify(path)}`);
  const startedAt = env[E.startedAt] ? int(env, E.startedAt, 0, 0, Number.MAX_SAFE_INTEGER) : undefined;
  const cfg: SidecarConfig = {
    instanceId: required(env, E.instanceId),
    instanceKey: required(env, E.instanceKey),
    listen: { host: env[E.listenHost] || d.listenHost, port: int(env, E.listenPort, d.listenPort, 0, 65535) },
    app: {
      host: env[E.appHost] || d.appHost,
      port: int(env, E.appPort, d.appPort, 1, 65535),
      ...(env[E.appKeepAliveMs] ? { keepAliveMs: int(env, E.appKeepAliveMs, 0, 0, 600_000) } : {}),
    },
    readiness: {
      path,
      expectStatus: int(env, E.readyStatus, d.readyStatus, 100, 599),
      intervalMs: int(env, E.probeIntervalMs, d.probeIntervalMs, 10, 600_000),
      timeoutMs: int(env, E.probeTimeoutMs, d.probeTimeoutMs, 10, 600_000),
      bootTimeoutMs: Math.round(num(env, E.bootTimeoutSec, d.bootTimeoutSec) * 1000),
      failureThreshold: int(env, E.failureThreshold, d.failureThreshold, 1, 1000),
    },
    ...(env[E.agentSocket] ? { agentSocket: env[E.agentSocket] } : {}),
    ...(startedAt !== undefined ? { startedAt } : {}),
  };
  return cfg;
}
