import { SidecarError } from './errors.js';
import { SIDECAR_ENV as E } from './protocol.js';

/** The liveness probe after ready (GET of `path`). */
export interface LivenessOptions {
  path: string;
  expectStatus: number;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive misses while idle that make the instance unhealthy. */
  failureThreshold: number;
}

/** One warm-up request, as the sidecar receives it (WARMPOOL_WARMUP, a JSON array). */
export interface WarmupStep {
  method: string;
  path: string;
  /** Sent as is (the agent serializes JSON bodies and sets content-type). */
  body?: string;
  headers?: Record<string, string>;
  timeoutMs: number;
  expectStatus: number;
}

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
  /** Default: the readiness probe with its timeout and failureThreshold (as before it existed). */
  liveness?: LivenessOptions;
  /** Sent in order after readiness; the instance is ready only when every one passed. */
  warmup?: WarmupStep[];
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

function invalid(message: string): SidecarError {
  return new SidecarError('WARMPOOL_INVALID_CONFIG', message);
}

function probePath(env: Record<string, string | undefined>, name: string, fallback: string): string {
  const path = env[name] || fallback;
  if (!path.startsWith('/')) throw invalid(`${name} must start with /, got ${JSON.stringify(path)}`);
  return path;
}

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * Parses WARMPOOL_WARMUP: a JSON array of WarmupStep; errors name the element and field, never
 * a header's value.
 */
export function parseWarmupSteps(raw: string | undefined): WarmupStep[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  let v: unknown;
  // Never quote the text: its headers may hold secret values (secretHeaders).
  try { v = JSON.parse(raw); } catch { throw invalid(`${E.warmup} must be a JSON array (not valid JSON)`); }
  if (!Array.isArray(v)) throw invalid(`${E.warmup} must be a JSON array`);
  return v.map((x: unknown, i): WarmupStep => {
    const at = `${E.warmup}[${i}]`;
    const o = x as Record<string, unknown>;
    if (typeof o !== 'object' || o === null) throw invalid(`${at} must be an object`);
    if (typeof o.path !== 'string' || !o.path.startsWith('/')) throw invalid(`${at}.path must start with /`);
    const method = o.method === undefined ? 'POST' : o.method;
    if (typeof method !== 'string' || !/^[A-Z]+$/.test(method)) throw invalid(`${at}.method must be an HTTP method`);
    if (o.body !== undefined && typeof o.body !== 'string') throw invalid(`${at}.body must be a string`);
    const headers: Record<string, string> = {};
    for (const [k, val] of Object.entries((o.headers ?? {}) as Record<string, unknown>)) {
      if (!HEADER_NAME.test(k) || typeof val !== 'string' || /[\r\n]/.test(val)) throw invalid(`${at}.headers.${k} is not a valid header`);
      headers[k] = val;
    }
    const timeoutMs = o.timeoutMs === undefined ? 60_000 : o.timeoutMs;
    if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1) throw invalid(`${at}.timeoutMs must be a positive integer`);
    const expectStatus = o.expectStatus === undefined ? 200 : o.expectStatus;
    if (typeof expectStatus !== 'number' || !Number.isInteger(expectStatus) || expectStatus < 100 || expectStatus > 599) throw invalid(`${at}.expectStatus must be an HTTP status`);
    return { method, path: o.path, ...(o.body !== undefined ? { body: o.body as string } : {}), headers, timeoutMs, expectStatus };
  });
}

/** Reads the sidecar's configuration from WARMPOOL_* variables (see sidecar/README.md). */
export function sidecarConfigFromEnv(env: Record<string, string | undefined>): SidecarConfig {
  const d = SIDECAR_DEFAULTS;
  const path = probePath(env, E.readyPath, d.readyPath);
  const startedAt = env[E.startedAt] ? int(env, E.startedAt, 0, 0, Number.MAX_SAFE_INTEGER) : undefined;
  const readiness: ReadinessOptions = {
    path,
    expectStatus: int(env, E.readyStatus, d.readyStatus, 100, 599),
    intervalMs: int(env, E.probeIntervalMs, d.probeIntervalMs, 10, 600_000),
    timeoutMs: int(env, E.probeTimeoutMs, d.probeTimeoutMs, 10, 600_000),
    bootTimeoutMs: Math.round(num(env, E.bootTimeoutSec, d.bootTimeoutSec) * 1000),
    failureThreshold: int(env, E.failureThreshold, d.failureThreshold, 1, 1000),
  };
  // Every liveness setting falls back to the readiness probe's: today's configuration works as before.
  const liveness: LivenessOptions = {
    path: probePath(env, E.livePath, readiness.path),
    expectStatus: int(env, E.liveStatus, readiness.expectStatus, 100, 599),
    intervalMs: int(env, E.liveIntervalMs, readiness.intervalMs, 10, 600_000),
    timeoutMs: int(env, E.liveTimeoutMs, readiness.timeoutMs, 10, 600_000),
    failureThreshold: int(env, E.liveFailureThreshold, readiness.failureThreshold, 1, 1000),
  };
  const warmup = parseWarmupSteps(env[E.warmup]);
  const cfg: SidecarConfig = {
    instanceId: required(env, E.instanceId),
    instanceKey: required(env, E.instanceKey),
    listen: { host: env[E.listenHost] || d.listenHost, port: int(env, E.listenPort, d.listenPort, 0, 65535) },
    app: {
      host: env[E.appHost] || d.appHost,
      port: int(env, E.appPort, d.appPort, 1, 65535),
      ...(env[E.appKeepAliveMs] ? { keepAliveMs: int(env, E.appKeepAliveMs, 0, 0, 600_000) } : {}),
    },
    readiness,
    liveness,
    ...(warmup?.length ? { warmup } : {}),
    ...(env[E.agentSocket] ? { agentSocket: env[E.agentSocket] } : {}),
    ...(startedAt !== undefined ? { startedAt } : {}),
  };
  return cfg;
}
