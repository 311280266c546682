import type { GpuDevice, HostImageState, KvStore, Registry } from '@warmpool/registry';
import type { ServiceBackoff } from './backoff.js';
import type { Clock } from './clock.js';
import type { ContainerRuntime } from './docker.js';
import type { HostAllowList } from './host-policy.js';
import type { Logger } from './logger.js';
import type { LocalInstance } from './plan.js';

/** Options, status and handle of an agent (see agent.ts and agent/README.md). */
export interface AgentTiming {
  /** Full re-list of containers and reconcile (with +-20 % jitter). */
  resyncMs: number;
  /** Full re-list of the registry cache. */
  cacheResyncMs: number;
  /** Our labelled containers that no instance owns are removed after this long. */
  strayGraceMs: number;
  /** Spread: delay per instance more than the emptiest host, before taking a slot. */
  spreadStepMs: number;
  maxSpreadMs: number;
  /** Per-service backoff after failed instances. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Docker event stream reconnect delay (doubling up to 5 s). */
  dockerRetryMs: number;
  /**
   * Each engine call of a launch (create, start) must finish within this: past it the host is
   * too slow, which is reported as a host fault, not charged to the service's backoff.
   */
  createTimeoutMs: number;
  /** Pull progress is written to the registry at most this often (per instance, and for the host record). */
  pullProgressMs: number;
  /** An image the agent pulled and no service has named for this long is removed (0 = never); docs/images.md. */
  imageGcAfterMs: number;
}

export const DEFAULT_TIMING: AgentTiming = {
  resyncMs: 30_000, cacheResyncMs: 60_000, strayGraceMs: 60_000, spreadStepMs: 50, maxSpreadMs: 1_000,
  backoffBaseMs: 1_000, backoffMaxMs: 300_000, dockerRetryMs: 200, createTimeoutMs: 120_000, pullProgressMs: 1_000,
  imageGcAfterMs: 3_600_000,
};

export interface AgentOptions {
  store: KvStore;
  prefix?: string;
  runtime: ContainerRuntime;
  hostId: string;
  /** Address routers reach this host's instances at; sidecar ports are published on it. */
  address: string;
  /** IP the sidecar ports bind to (default: address). */
  publishIp?: string;
  capacity: { instances: number; memoryMb: number };
  labels?: Record<string, string>;
  /** What services may ask of this host (default: no host paths, no host IPC, secrets under /etc/warmpool/secrets). */
  allow?: HostAllowList;
  /** This host's GPUs (run.ts resolves them from the config or nvidia-smi); none by default. */
  gpus?: GpuDevice[];
  /** Holds the agent's socket (mounted into every sidecar). */
  runDir: string;
  leaseTtlSec?: number;
  /** Container label value; default derived from the prefix. */
  cluster?: string;
  sidecarImage?: string;
  sidecarPort?: number;
  /** Docker network pods join (default: the engine's default bridge). */
  network?: string;
  /** Docker config file with registry credentials (`auths`, as `docker login` writes it); read at each pull. */
  dockerConfigPath?: string;
  timing?: Partial<AgentTiming>;
  clock?: Clock;
  random?: () => number;
  newInstanceId?: (service: string) => string;
  logger?: Logger;
  version?: string;
}

export interface AgentStatus {
  hostId: string;
  cluster: string;
  draining: boolean;
  capacity: { instances: number; memoryMb: number };
  instances: LocalInstance[];
  backoff: ReturnType<ServiceBackoff['snapshot']>;
  /** Backoff after host faults (engine too slow, disk full), for every service on this host (key '*'). */
  hostBackoff: ReturnType<ServiceBackoff['snapshot']>;
  /** Images of the applied services on this host, and the per-image pull backoff. */
  images: Record<string, HostImageState>;
  imageBackoff: ReturnType<ServiceBackoff['snapshot']>;
  strays: string[];
  docker: 'connected' | 'reconnecting';
}

export interface AgentHandle {
  readonly hostId: string;
  /** The agent's registry (its watch cache feeds the Consul catalog publisher). */
  readonly registry: Registry;
  readonly cluster: string;
  readonly socketPath: string;
  status(): AgentStatus;
  /** Re-lists containers and reconciles now (tests, `kill -HUP`). */
  resync(): Promise<void>;
  /**
   * Stops the agent. By default containers keep running and the registry records live on
   * until the lease TTL, so a restarted agent adopts them. destroyInstances: remove every
   * instance and revoke the lease (host decommissioned).
   */
  close(opts?: { destroyInstances?: boolean }): Promise<void>;
}
