/**
 * The container engine as the agent needs it. Only docker-dockerode.ts implements it with
 * dockerode; unit tests use a fake.
 */
export interface ContainerSummary {
  id: string;
  labels: Record<string, string>;
  running: boolean;
  /** Epoch ms the container was created. */
  createdAt: number;
  /** Published ports: container port (tcp) -> host port. */
  ports: Record<number, number>;
}

export interface ContainerCreateSpec {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  /** Memory limit in bytes (0 = none). */
  memoryBytes?: number;
  /** CPU limit in 1e-9 CPUs (0 = none). */
  nanoCpus?: number;
  /** Publish this container port on hostIp with a port the engine picks. */
  publish?: { containerPort: number; hostIp: string };
  /** Join that container's network namespace (the "pod" pattern). */
  networkOfContainer?: string;
  /** Docker network to attach to (default: the engine's default bridge). */
  network?: string;
  /** host path -> container path */
  binds?: Record<string, string>;
  /** The service's volumes (host paths already allowed by the agent's config, or named volumes). */
  volumes?: { source: string; target: string; readOnly: boolean }[];
  cmd?: string[];
  entrypoint?: string[];
  user?: string;
  shmSizeBytes?: number;
  /** private | shareable | host */
  ipcMode?: string;
  /** -1 is unlimited. */
  ulimits?: { name: string; soft: number; hard: number }[];
  /** GPUs given exclusively to this container (the device request of `--gpus '"device=ID,..."'`). */
  gpuDeviceIds?: string[];
  /** Linux capabilities added (e.g. NET_ADMIN). */
  capAdd?: string[];
}

export interface ContainerDetails {
  id: string;
  running: boolean;
  exitCode: number | null;
  oomKilled: boolean;
  labels: Record<string, string>;
  ports: Record<number, number>;
  /** Epoch ms the container's process last started (the engine's clock); absent when unknown. */
  startedAt?: number | null;
  /** The engine's error text for a container that failed to run (e.g. a start failure). */
  error?: string;
}

export interface ContainerEvent {
  /** die | oom | kill | destroy | start | create ... */
  action: string;
  id: string;
  labels: Record<string, string>;
  /** kill: the signal; die: the exit code. */
  signal?: string;
  exitCode?: number;
  /** Epoch ms. */
  time: number;
}

export interface EventSubscription {
  close(): void;
}

/** Credentials for one registry, as the engine's X-Registry-Auth header carries them. */
export interface RegistryAuth {
  serveraddress: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** Bytes of an image pull so far, summed over the layers the engine downloads. */
export interface PullBytes {
  done: number;
  /** null until the engine has announced the size of at least one layer. */
  total: number | null;
}

/** A named volume as the engine holds it (`docker volume inspect`: Driver, Options). */
export interface VolumeInfo {
  driver: string;
  /** The driver options it was created with (local: type, o, device); empty when none. */
  options: Record<string, string>;
}

export interface ImageSummary {
  id: string;
  /** repo:tag references (none for a dangling image). */
  tags: string[];
}

export interface ContainerRuntime {
  /** Every container (running or not) carrying all of these labels. */
  list(labels: Record<string, string>): Promise<ContainerSummary[]>;
  create(spec: ContainerCreateSpec): Promise<string>;
  start(id: string): Promise<void>;
  /** undefined when the container does not exist. */
  inspect(id: string): Promise<ContainerDetails | undefined>;
  /**
   * Filters the network namespace of a running container: new TCP connections from outside it
   * (not over loopback) are refused except to `allowTcpPort`. Done before the app joins the
   * namespace, so the app's own ports are never reachable around its sidecar.
   */
  isolate(id: string, allowTcpPort: number): Promise<void>;
  /** Force-removes (with volumes); a container that is already gone is not an error. */
  remove(id: string): Promise<void>;
  /**
   * Container events of containers carrying these labels. `onClose` fires once when the
   * stream ends for any reason (the engine restarted, the connection broke); the caller
   * subscribes again.
   */
  subscribe(labels: Record<string, string>, onEvent: (e: ContainerEvent) => void, onClose: (err?: Error) => void): Promise<EventSubscription>;
  /** Whether the engine holds the image (a reference: repo:tag or repo@digest). */
  imagePresent(ref: string): Promise<boolean>;
  /**
   * Pulls the image; `onProgress` gets the bytes so far. Rejects with an AgentError
   * WARMPOOL_PULL_FAILED whose message is the registry's own words (and `pullFailure`, the
   * kind), or WARMPOOL_DOCKER_UNAVAILABLE. Aborting the signal stops the pull.
   */
  pull(ref: string, opts: { auth?: RegistryAuth; signal?: AbortSignal; onProgress?: (p: PullBytes) => void }): Promise<void>;
  /** Every image the engine holds, with the ids of the containers (any state) created from it. */
  listImages(): Promise<(ImageSummary & { containers: string[] })[]>;
  /** Removes an image reference (never forced: an image a container uses stays). */
  removeImage(ref: string): Promise<void>;
  /** A named volume's driver and options; undefined when none by that name exists (the engine would create a plain local one). */
  volume(name: string): Promise<VolumeInfo | undefined>;
}
