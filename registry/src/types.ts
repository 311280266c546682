/**
 * Records stored in the registry. Every value is JSON; the layout under the prefix is
 * documented in docs/registry.md. Times are epoch milliseconds.
 */

import type { VolumeSpec } from './container-options.js';

/**
 * `pulling`: waiting for its image on the host; the boot clock has not started (docs/images.md).
 * `warming`: ready to the readiness probe, the sidecar is sending the warm-up requests.
 */
export type InstanceState = 'pulling' | 'booting' | 'warming' | 'ready' | 'claimed' | 'draining' | 'failed';

/** One warm-up request (see ServiceSpec.warmup). */
export interface WarmupRequest {
  method: 'GET' | 'POST' | 'PUT';
  /** Path on the app, starting with /. */
  path: string;
  /** A string is sent as is; an object or array as JSON. */
  body?: string | Record<string, unknown> | unknown[];
  /** Stored in the registry: never put a secret here (credential header names are refused). */
  headers?: Record<string, string>;
  /**
   * Header name -> a file on the host holding its value (`/path`), or `{file, prefix}` (value
   * = prefix + the file's content); read by the agent and handed only to its own sidecar.
   */
  secretHeaders?: Record<string, string | { file: string; prefix: string }>;
  /** The request fails (and with it the boot) when no full answer comes by then. */
  timeoutSec: number;
  expectStatus: number;
}

/** A probe of the app's health endpoint (GET). */
export interface ProbeSpec {
  path: string;
  expectStatus: number;
  intervalMs: number;
  /** A probe without an answer by then is a miss (sidecar default: 2000). */
  timeoutMs?: number;
  failureThreshold: number;
}

/** When the agent pulls a service's image (Docker / Compose / Kubernetes names). */
export type PullPolicy = 'IfNotPresent' | 'Always' | 'Never';

/** Progress of an image pull, summed over the image's layers as the engine reports them. */
export interface PullProgress {
  image: string;
  /** Bytes downloaded so far. */
  bytesDone: number;
  /** Sum of the sizes of the layers the engine downloads (null until the engine announces them). */
  bytesTotal: number | null;
  /** 0-100, from bytesDone / bytesTotal (null while bytesTotal is unknown). */
  percent: number | null;
}

/** How one image stands on one host (HostRecord.images). */
export interface HostImageState {
  state: 'present' | 'pulling' | 'failed';
  bytesDone?: number;
  bytesTotal?: number | null;
  percent?: number | null;
  /** The registry's (or engine's) own words when state is failed. */
  reason?: string;
  /** Epoch ms of the last change. */
  at: number;
}

/**
 * How long each stage of an instance's start took, in ms (null: not reached or not measured).
 * pullMs: the wait for the image (0 when the host had it); createMs: container creation
 * until the app container runs (engine's StartedAt); bootMs: app start to the first
 * successful readiness probe; warmupMs: the warm-up requests.
 */
export interface InstanceStages {
  pullMs?: number | null;
  createMs?: number | null;
  bootMs?: number | null;
  warmupMs?: number | null;
}

/** Desired state of one service, written by `warmpool apply`. */
export interface ServiceSpec {
  name: string;
  image: string;
  /** Port the app listens on inside its container (never published). */
  containerPort: number;
  /**
   * Ready-or-booting unclaimed instances kept across the whole fleet: a number (a static
   * pool) or a demand-driven policy (docs/pool-sizing.md). Either way, sessions waiting in
   * routers' queues add instances on top (DemandRecord).
   */
  warm: number | WarmPolicy;
  /** Upper bound of instances of this service on one host. */
  maxPerHost: number;
  /** An instance not ready within this many seconds is destroyed and replaced. */
  bootTimeoutSec: number;
  /**
   * Probed until ready (expectStatus: 200 for vLLM / TGI / llama.cpp server). Without
   * `liveness`, also the liveness probe after ready; failureThreshold: consecutive misses
   * after ready that take an idle instance out.
   */
  readiness: ProbeSpec;
  /** The liveness probe after ready (its own endpoint, e.g. NIM's /v1/health/live). */
  liveness?: ProbeSpec & { timeoutMs: number };
  /** Requests sent after readiness and before the instance is reported ready, in order. */
  warmup?: WarmupRequest[];
  session: {
    /** A session with no traffic for this long expires. */
    idleTimeoutSec: number;
    /** A session never lives longer than this. */
    maxLifetimeSec: number;
  };
  env: Record<string, string>;
  resources: {
    /** Memory limit in MiB (0 = none). */
    memoryMb: number;
    /** CPU limit in cores (0 = none). */
    cpus: number;
    /** GPUs per instance, exclusively its own (default 0 = none). */
    gpus?: number;
  };
  // ---- images (docs/images.md); optional: specs written before these fields mean the defaults ----
  /** IfNotPresent (default): pull when the host lacks the image; Always: pull before every instance; Never: only local images. */
  pullPolicy?: PullPolicy;
  /** A pull that takes longer fails (default 1800; its own clock, never part of bootTimeoutSec). */
  pullTimeoutSec?: number;
  // ---- model-server container options (registry/src/container-options.ts); optional in
  // this type (the schema fills the defaults) so specs written before them still type-check.
  command?: string[];
  entrypoint?: string[];
  volumes?: VolumeSpec[];
  shmSizeMb?: number;
  ipc?: 'private' | 'shareable' | 'host';
  /** name -> limits; -1 is unlimited. */
  ulimits?: Record<string, { soft: number; hard: number }>;
  user?: string;
  /** Env variable -> absolute path of a file on the host holding its value. */
  secretEnv?: Record<string, string>;
  placement?: { hostLabels: Record<string, string> };
}

/** One GPU of a host's inventory (from nvidia-smi, or the agent's config). */
export interface GpuDevice {
  /** The id in the container's device request (`--gpus '"device=ID"'`): the index, or a UUID. */
  id: string;
  uuid?: string;
  name?: string;
  memoryMb?: number;
}

/**
 * A demand-driven pool (docs/pool-sizing.md): enough instances that a new session finds one
 * ready with probability `target`, from the claim rate and the boot time the registry shows.
 */
export interface WarmPolicy {
  /** Never fewer ready-or-booting instances than this (0: scale to zero). */
  min: number;
  /** Never more than this (waiting sessions may still add their own boots on top). */
  max: number;
  /** Probability, in (0, 1), that a new session finds a ready instance. */
  target: number;
  /** Seconds of claims the rate is measured over (default 300). */
  windowSec: number;
  /** Seconds the pool stays at a size before it may shrink (default 300). */
  cooldownSec: number;
  /**
   * Boot time (s) the model assumes until one is measured (default 30): a service that
   * scales from zero after its boot history has expired (30-60 min) sizes its first pool
   * from this. Set it to the service's typical start (pull, boot and warm-up).
   */
  bootSec?: number;
  /** Known demand: during each window the pool keeps at least its `min`. */
  windows: WarmWindow[];
}

/** A recurring time window with its own minimum, e.g. weekdays 08:00-18:00 in Europe/Paris. */
export interface WarmWindow {
  /** Days the window starts on (mon..sun); all days when empty. */
  days: ('mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun')[];
  /** Local start time "HH:MM". */
  start: string;
  /** Local end time "HH:MM"; before `start`: the window runs past midnight. */
  end: string;
  /** IANA time zone the times are in (default UTC). */
  timezone: string;
  min: number;
}

/**
 * Sessions waiting in one router's FIFO queue for an instance of a service, published by
 * that router on its own lease (gone with the router). Agents add every router's `waiting`
 * to the pool size, so a burst boots one instance per waiter at once.
 */
export interface DemandRecord {
  service: string;
  router: string;
  waiting: number;
  /** When the oldest of these requests started waiting (epoch ms). */
  oldestSince: number;
  at: number;
}

/** A host, written by its agent on the host lease. */
export interface HostRecord {
  id: string;
  /** Address the host's instances are reachable at (published ports bind here). */
  address: string;
  /** gpus: how many GPUs the inventory holds (0 without GPUs; absent from older agents). */
  capacity: { instances: number; memoryMb: number; gpus?: number };
  /** The GPU inventory (absent from older agents). */
  gpus?: GpuDevice[];
  labels: Record<string, string>;
  /** Set by `warmpool drain`: no new instances are started here. */
  draining: boolean;
  startedAt: number;
  agentVersion: string;
  /** Images of the applied services as they stand on this host (pulled ahead of need), by image reference. */
  images?: Record<string, HostImageState>;
}

/** An instance, owned by the agent of its host (the sidecar reports through the agent). */
export interface InstanceRecord {
  id: string;
  service: string;
  host: string;
  state: InstanceState;
  /** host:port of the sidecar in front of the app. */
  address: string;
  containerId: string;
  /** Warm slot this instance holds while unclaimed (see docs/ARCHITECTURE.md). */
  slot: number | null;
  createdAt: number;
  readyAt: number | null;
  /** Measured from container start to the first successful readiness probe (= stages.bootMs). */
  bootMs: number | null;
  /** While state is pulling: the image pull this instance waits for. */
  pull?: PullProgress | null;
  /** How long each stage took (see InstanceStages). */
  stages?: InstanceStages;
  /**
   * A lease (TTL = the service's idle timeout) granted by the agent when the instance became
   * ready and kept alive by it until the instance is claimed: the claim attaches the session
   * to it, so a claim costs one transaction and no lease grant.
   */
  sessionLease?: string | null;
  /** GPU ids given to the instance (exclusively), if any. */
  gpus?: string[];
  /** Why the instance failed, when state is failed. */
  reason?: string;
}

/** A session, owned by the router that claimed it; lives on a lease whose TTL is the idle timeout. */
export interface SessionRecord {
  id: string;
  service: string;
  instanceId: string;
  host: string;
  /** Copied from the instance at claim time, so the session survives its agent's restart. */
  address: string;
  createdAt: number;
  /** Hard end: createdAt + maxLifetimeSec. */
  expiresAt: number;
  idleTimeoutSec: number;
  /** etcd lease id (decimal string) or Consul session id. */
  lease: string;
  idempotencyKey?: string;
}

/** Marker that an instance is taken; lives on the session's lease (once ended: the tombstone lease). */
export interface ClaimRecord {
  sessionId: string;
  service: string;
  instanceId: string;
  claimedAt: number;
  /** How long the session's request waited for an instance (0: one was ready). */
  waitedMs?: number;
  /** The claimed instance's measured boot time (ms) and when it became ready: the boot history outlives the instance. */
  bootMs?: number;
  readyAt?: number;
  /**
   * Set when the session was ended: the claim stays (on the tombstone lease) so the used
   * instance can never be claimed again, even before its agent has marked or destroyed it.
   */
  ended?: boolean;
  endedAt?: number;
}

/** Left behind when a session ends, so routers can answer 410 instead of 404. */
export interface TombstoneRecord {
  sessionId: string;
  service: string;
  instanceId: string;
  reason: 'ended' | 'expired' | 'instance-gone';
  endedAt: number;
  /** When the session was claimed, and how long its request waited (arrival history, pool sizing). */
  claimedAt?: number;
  waitedMs?: number;
  bootMs?: number;
  readyAt?: number;
}

/** Holder of a warm slot. */
export interface SlotRecord {
  service: string;
  slot: number;
  instanceId: string;
  host: string;
}

export type ClaimResult =
  | { ok: true; session: SessionRecord; instance: InstanceRecord; created: boolean }
  | { ok: false; reason: 'no-ready-instance' | 'unknown-service' | 'session-ended' };
