import { createHmac } from 'node:crypto';

/**
 * What the sidecar and its agent say to each other (the agent imports this module, the
 * sidecar implements it). The sidecar never writes the registry: it reports its state to
 * the agent over a unix socket the agent bind-mounts into the sidecar container, so it never
 * needs a container bridge IP.
 *
 *   sidecar -> agent  POST /v1/instances/{id}/state  StateReport  (header x-warmpool-report)
 *   agent -> sidecar  GET  /_warmpool/status          SidecarStatus (through the published port)
 */
/** warming: only reported when warm-up requests are configured (older agents never ask for them). */
export type SidecarState = 'booting' | 'warming' | 'ready' | 'failed' | 'unhealthy';

export interface StateReport {
  instanceId: string;
  state: SidecarState;
  /** From the app's start to the first successful readiness probe; null until ready. */
  bootMs: number | null;
  /** How long the warm-up requests took (on 'ready' after a warm-up). */
  warmupMs?: number | null;
  reason?: string;
  /** Epoch ms when the sidecar entered this state. */
  at: number;
}

export interface SidecarStatus {
  instanceId: string;
  state: SidecarState;
  bootMs: number | null;
  readyAt: number | null;
  warmupMs?: number | null;
  /** Epoch ms of the last state change. */
  since: number;
  /** True once a session's request has been let through: the instance is used. */
  sessionPinned: boolean;
  reason?: string;
}

/** Reserved path prefix on the sidecar's port (never forwarded to the app). */
export const SIDECAR_PATH_PREFIX = '/_warmpool/';
export const STATUS_PATH = '/_warmpool/status';
export const REPORT_HEADER = 'x-warmpool-report';
/** Where the agent's socket appears inside the sidecar container. */
export const RUN_DIR_IN_CONTAINER = '/run/warmpool';
export const AGENT_SOCKET_NAME = 'agent.sock';

export function reportPath(instanceId: string): string {
  return `/v1/instances/${encodeURIComponent(instanceId)}/state`;
}

/**
 * Proves a report comes from the sidecar of that instance: only the agent and that sidecar
 * know the instance key. Without it any container that can reach the socket could mark
 * any instance ready.
 */
export function reportToken(instanceKeyValue: string, instanceId: string): string {
  return createHmac('sha256', instanceKeyValue).update(`report:${instanceId}`).digest('base64url');
}

/** Environment variables the sidecar reads (set by the agent on the sidecar container). */
export const SIDECAR_ENV = {
  instanceId: 'WARMPOOL_INSTANCE_ID',
  instanceKey: 'WARMPOOL_INSTANCE_KEY',
  listenHost: 'WARMPOOL_LISTEN_HOST',
  listenPort: 'WARMPOOL_LISTEN_PORT',
  appHost: 'WARMPOOL_APP_HOST',
  appPort: 'WARMPOOL_APP_PORT',
  appKeepAliveMs: 'WARMPOOL_APP_KEEPALIVE_MS',
  readyPath: 'WARMPOOL_READY_PATH',
  readyStatus: 'WARMPOOL_READY_STATUS',
  probeIntervalMs: 'WARMPOOL_PROBE_INTERVAL_MS',
  probeTimeoutMs: 'WARMPOOL_PROBE_TIMEOUT_MS',
  bootTimeoutSec: 'WARMPOOL_BOOT_TIMEOUT_SEC',
  failureThreshold: 'WARMPOOL_FAILURE_THRESHOLD',
  livePath: 'WARMPOOL_LIVE_PATH',
  liveStatus: 'WARMPOOL_LIVE_STATUS',
  liveIntervalMs: 'WARMPOOL_LIVE_INTERVAL_MS',
  liveTimeoutMs: 'WARMPOOL_LIVE_TIMEOUT_MS',
  liveFailureThreshold: 'WARMPOOL_LIVE_FAILURE_THRESHOLD',
  warmup: 'WARMPOOL_WARMUP',
  agentSocket: 'WARMPOOL_AGENT_SOCKET',
  startedAt: 'WARMPOOL_STARTED_AT',
} as const;
