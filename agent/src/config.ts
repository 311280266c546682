import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AgentError } from './errors.js';

/**
 * The agent's configuration: a file (YAML or JSON, e.g. /etc/warmpool/agent.yaml), then
 * WARMPOOL_* environment variables, then command-line flags, each overriding the one before.
 * agent/README.md has the table.
 */
const absPath = z.string().startsWith('/', 'must be an absolute path').refine((p) => !p.split('/').includes('..'), 'must not contain ..');
const gpuDevice = z.object({
  id: z.string().regex(/^[A-Za-z0-9:_.-]+$/, 'a GPU index or UUID'),
  uuid: z.string().optional(), name: z.string().optional(), memoryMb: z.number().int().min(0).optional(),
}).strict();

const hostId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'letters, digits, _ . - (1-63 characters)');

export const agentConfigSchema = z.object({
  registry: z.object({
    etcd: z.string().optional(),
    consul: z.string().optional(),
    prefix: z.string().default('/warmpool/'),
    etcdCa: z.string().optional(), etcdCert: z.string().optional(), etcdKey: z.string().optional(), etcdUser: z.string().optional(),
  }).strict().prefault({}),
  hostId: hostId.default(() => os.hostname().split('.')[0]!.replace(/[^A-Za-z0-9_.-]/g, '-') || 'host'),
  address: z.string().min(1).default('127.0.0.1'),
  publishIp: z.string().min(1).optional(),
  capacity: z.object({
    instances: z.number().int().min(0).default(16),
    memoryMb: z.number().int().min(0).default(() => Math.floor((os.totalmem() / 1024 / 1024) * 0.9)),
  }).strict().prefault({}),
  labels: z.record(z.string(), z.string()).default({}),
  /**
   * What services may ask of this host (whoever can write the registry must not gain root
   * here): bind mounts only under hostPaths prefixes, --ipc=host only with ipcHost, secret
   * files only under secretDirs, named volumes only with a name matching a volumes glob.
   */
  allow: z.object({
    hostPaths: z.array(absPath).default([]),
    ipcHost: z.boolean().default(false),
    secretDirs: z.array(absPath).default(['/etc/warmpool/secrets']),
    volumes: z.array(z.string().regex(/^[A-Za-z0-9_.*?-]+$/, 'a volume name or a glob of one (* and ?)')).default([]),
  }).strict().prefault({}),
  /** GPU inventory: the configured devices, else what nvidia-smi lists (detect), else none. */
  gpus: z.object({
    detect: z.boolean().default(true),
    devices: z.array(z.union([z.string().transform((id) => ({ id })).pipe(gpuDevice), gpuDevice])).optional(),
  }).strict().prefault({}),
  runDir: z.string().min(1).default('/run/warmpool'),
  /** The local Consul agent (HOST:PORT): ready instances are published there for DNS. */
  consulAgent: z.string().regex(/^[^:\s]+:\d{1,5}$/, 'HOST:PORT of the local Consul agent').optional(),
  leaseTtlSec: z.number().int().min(1).max(3600).default(10),
  cluster: z.string().regex(/^[A-Za-z0-9_.-]+$/).optional(),
  sidecar: z.object({
    image: z.string().min(1).default('warmpool/sidecar'),
    port: z.number().int().min(1).max(65535).default(9000),
  }).strict().prefault({}),
  docker: z.object({
    socketPath: z.string().min(1).default('/var/run/docker.sock'),
    /** Docker network the pods join (default: the engine's default bridge). */
    network: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a Docker network name').optional(),
  }).strict().prefault({}),
  /** Image pulls and clean-up (docs/images.md). */
  images: z.object({
    /** Docker config file holding registry credentials (`auths`); none: anonymous pulls. */
    dockerConfig: z.string().min(1).optional(),
    /** An image this agent pulled and no service has named for this long is removed (0 = never). */
    gcAfterSec: z.number().min(0).default(3600),
  }).strict().prefault({}),
  timing: z.object({
    resyncSec: z.number().positive().default(30),
    strayGraceSec: z.number().min(0).default(60),
    spreadStepMs: z.number().min(0).default(50),
    maxSpreadMs: z.number().min(0).default(1000),
    backoffBaseMs: z.number().positive().default(1000),
    backoffMaxMs: z.number().positive().default(300_000),
    /** Each engine call of a launch (create, start) must finish within this; past it: a host fault. */
    createTimeoutSec: z.number().positive().max(3600).default(120),
  }).strict().prefault({}),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
}).strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

/** Flags and env variables, by name (`--host-id` / WARMPOOL_HOST_ID), and where they go. */
type SettingType = 'string' | 'number' | 'list' | 'labels' | 'boolean';

export const SETTINGS: { flag: string; env: string; path: string[]; type: SettingType }[] = [
  { flag: 'etcd', env: 'WARMPOOL_ETCD', path: ['registry', 'etcd'], type: 'string' },
  { flag: 'consul', env: 'WARMPOOL_CONSUL', path: ['registry', 'consul'], type: 'string' },
  { flag: 'prefix', env: 'WARMPOOL_PREFIX', path: ['registry', 'prefix'], type: 'string' },
  { flag: 'etcd-ca', env: 'WARMPOOL_ETCD_CA', path: ['registry', 'etcdCa'], type: 'string' },
  { flag: 'etcd-cert', env: 'WARMPOOL_ETCD_CERT', path: ['registry', 'etcdCert'], type: 'string' },
  { flag: 'etcd-key', env: 'WARMPOOL_ETCD_KEY', path: ['registry', 'etcdKey'], type: 'string' },
  { flag: 'etcd-user', env: 'WARMPOOL_ETCD_USER', path: ['registry', 'etcdUser'], type: 'string' },
  { flag: 'host-id', env: 'WARMPOOL_HOST_ID', path: ['hostId'], type: 'string' },
  { flag: 'address', env: 'WARMPOOL_ADDRESS', path: ['address'], type: 'string' },
  { flag: 'publish-ip', env: 'WARMPOOL_PUBLISH_IP', path: ['publishIp'], type: 'string' },
  { flag: 'instances', env: 'WARMPOOL_CAPACITY_INSTANCES', path: ['capacity', 'instances'], type: 'number' },
  { flag: 'memory-mb', env: 'WARMPOOL_CAPACITY_MEMORY_MB', path: ['capacity', 'memoryMb'], type: 'number' },
  { flag: 'label', env: 'WARMPOOL_LABELS', path: ['labels'], type: 'labels' },
  { flag: 'allow-host-path', env: 'WARMPOOL_ALLOW_HOST_PATHS', path: ['allow', 'hostPaths'], type: 'list' },
  { flag: 'allow-ipc-host', env: 'WARMPOOL_ALLOW_IPC_HOST', path: ['allow', 'ipcHost'], type: 'boolean' },
  { flag: 'secret-dir', env: 'WARMPOOL_SECRET_DIRS', path: ['allow', 'secretDirs'], type: 'list' },
  { flag: 'allow-volume', env: 'WARMPOOL_ALLOW_VOLUMES', path: ['allow', 'volumes'], type: 'list' },
  { flag: 'gpus', env: 'WARMPOOL_GPUS', path: ['gpus', 'devices'], type: 'list' },
  { flag: 'gpu-detect', env: 'WARMPOOL_GPU_DETECT', path: ['gpus', 'detect'], type: 'boolean' },
  { flag: 'run-dir', env: 'WARMPOOL_RUN_DIR', path: ['runDir'], type: 'string' },
  { flag: 'consul-agent', env: 'WARMPOOL_CONSUL_AGENT', path: ['consulAgent'], type: 'string' },
  { flag: 'lease-ttl', env: 'WARMPOOL_LEASE_TTL', path: ['leaseTtlSec'], type: 'number' },
  { flag: 'cluster', env: 'WARMPOOL_CLUSTER', path: ['cluster'], type: 'string' },
  { flag: 'sidecar-image', env: 'WARMPOOL_SIDECAR_IMAGE', path: ['sidecar', 'image'], type: 'string' },
  { flag: 'sidecar-port', env: 'WARMPOOL_SIDECAR_PORT', path: ['sidecar', 'port'], type: 'number' },
  { flag: 'docker-config', env: 'WARMPOOL_DOCKER_CONFIG', path: ['images', 'dockerConfig'], type: 'string' },
  { flag: 'image-gc-after-sec', env: 'WARMPOOL_IMAGE_GC_AFTER_SEC', path: ['images', 'gcAfterSec'], type: 'number' },
  { flag: 'docker-socket', env: 'WARMPOOL_DOCKER_SOCKET', path: ['docker', 'socketPath'], type: 'string' },
  { flag: 'docker-network', env: 'WARMPOOL_DOCKER_NETWORK', path: ['docker', 'network'], type: 'string' },
  { flag: 'resync-sec', env: 'WARMPOOL_RESYNC_SEC', path: ['timing', 'resyncSec'], type: 'number' },
  { flag: 'stray-grace-sec', env: 'WARMPOOL_STRAY_GRACE_SEC', path: ['timing', 'strayGraceSec'], type: 'number' },
  { flag: 'spread-step-ms', env: 'WARMPOOL_SPREAD_STEP_MS', path: ['timing', 'spreadStepMs'], type: 'number' },
  { flag: 'backoff-base-ms', env: 'WARMPOOL_BACKOFF_BASE_MS', path: ['timing', 'backoffBaseMs'], type: 'number' },
  { flag: 'backoff-max-ms', env: 'WARMPOOL_BACKOFF_MAX_MS', path: ['timing', 'backoffMaxMs'], type: 'number' },
  { flag: 'create-timeout-sec', env: 'WARMPOOL_CREATE_TIMEOUT_SEC', path: ['timing', 'createTimeoutSec'], type: 'number' },
  { flag: 'log-level', env: 'WARMPOOL_LOG_LEVEL', path: ['logLevel'], type: 'string' },
];

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o = obj;
  for (const k of path.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
}

function convert(name: string, type: SettingType, raw: string | string[]): unknown {
  const values = Array.isArray(raw) ? raw : [raw];
  switch (type) {
    case 'string': return values[values.length - 1];
    case 'list': return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
    case 'number': {
      const v = values[values.length - 1]!;
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n)) throw new AgentError('WARMPOOL_INVALID_CONFIG', `${name}: expected a number, got ${JSON.stringify(v)}`);
      return n;
    }
    case 'boolean': {
      const v = values[values.length - 1]!.trim().toLowerCase();
      if (['true', '1', 'yes'].includes(v)) return true;
      if (['false', '0', 'no'].includes(v)) return false;
      throw new AgentError('WARMPOOL_INVALID_CONFIG', `${name}: expected true or false, got ${JSON.stringify(v)}`);
    }
    case 'labels': {
      const out: Record<string, string> = {};
      for (const item of values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean)) {
        const eq = item.indexOf('=');
        if (eq <= 0) throw new AgentError('WARMPOOL_INVALID_CONFIG', `${name}: labels are KEY=VALUE, got ${JSON.stringify(item)}`);
        out[item.slice(0, eq)] = item.slice(eq + 1);
      }
      return out;
    }
  }
}

export interface ConfigSources {
  /** Parsed file content (see readConfigFile). */
  file?: unknown;
  env?: Record<string, string | undefined>;
  /** Flag values by flag name without dashes (`host-id`), as parseArgs gives them. */
  flags?: Record<string, string | string[] | boolean | undefined>;
}

/** Merges file < env < flags and validates; errors name the setting that is wrong. */
export function resolveAgentConfig(src: ConfigSources): AgentConfig {
  const merged = structuredClone((src.file ?? {}) as Record<string, unknown>);
  if (typeof merged !== 'object' || merged === null || Array.isArray(merged)) throw new AgentError('WARMPOOL_INVALID_CONFIG', 'the config file must hold a mapping');
  for (const s of SETTINGS) {
    const v = src.env?.[s.env];
    if (v !== undefined && v !== '') setPath(merged, s.path, convert(s.env, s.type, v));
  }
  for (const s of SETTINGS) {
    const v = src.flags?.[s.flag];
    if (v !== undefined && typeof v !== 'boolean') setPath(merged, s.path, convert(`--${s.flag}`, s.type, v));
  }
  const r = agentConfigSchema.safeParse(merged);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new AgentError('WARMPOOL_INVALID_CONFIG', `invalid agent configuration: ${problems}`);
  }
  return r.data;
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AgentError('WARMPOOL_INVALID_CONFIG', `cannot read the config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new AgentError('WARMPOOL_INVALID_CONFIG', `${path} is not valid YAML/JSON: ${(err as Error).message}`, { cause: err });
  }
}
