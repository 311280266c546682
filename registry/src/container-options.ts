import { z } from 'zod';

/**
 * What a services file may ask of a model server's container beyond image, env and limits:
 * the options of the documented `docker run` lines of vLLM, SGLang, llama.cpp server,
 * Ollama, Triton and NIM, under their Docker / Compose names. Grouped here (one idea, one
 * file) and spread into the service schema. What a host actually grants (host paths, host
 * IPC, secret files) is decided by the agent's own config, never by these fields.
 */

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _');
const absPath = z.string().startsWith('/', 'must be an absolute path').refine((p) => !p.split('/').includes('..'), 'must not contain ..');
/** An HTTP header name (RFC 9110 token). */
export const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name');

/**
 * One warm-up header whose value the agent reads from a file on its host, like secretEnv:
 * `/path` (the file holds the whole value) or `{file: /path, prefix: 'Bearer '}` (the value is
 * the prefix and the file's content, so one key file serves both `secretEnv` and the header).
 * The registry holds only the path and the prefix.
 */
export const secretHeader = z.union([
  absPath,
  z.object({ file: absPath, prefix: z.string().max(256).regex(/^[\u0020-\u007e]*$/, 'printable ASCII (no line breaks)').default('') }).strict(),
]);
/** `warmup[].secretHeaders`: header name -> secretHeader. */
export const secretHeaders = z.record(headerName, secretHeader);

/** Docker volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ */
const volumeName = /^[A-Za-z0-9][A-Za-z0-9_.-]+$/;

/** One mount: a host path (absolute) or a named volume, like `-v SOURCE:TARGET[:ro]`. */
export interface VolumeSpec {
  /** Absolute host path (a bind mount) or a named volume. */
  source: string;
  /** Absolute path in the container. */
  target: string;
  readOnly: boolean;
}

/** The engine's bind is `SOURCE:TARGET[:MODE]`: a `:` in a part would add a mode (`:Z` relabels the host path). */
const noColon = (s: string): boolean => !s.includes(':');

const volumeObject = z.object({
  source: z.string().min(1).refine((s) => (s.startsWith('/') ? !s.split('/').includes('..') : volumeName.test(s)),
    'an absolute host path (without ..) or a volume name ([A-Za-z0-9][A-Za-z0-9_.-]+)')
    .refine(noColon, 'must not contain : (it separates source, target and mode)'),
  target: absPath.refine(noColon, 'must not contain : (it separates source, target and mode)'),
  readOnly: z.boolean().default(false),
}).strict();

/** `SOURCE:TARGET[:ro|rw]` (Compose short syntax) or `{source, target, readOnly}`; errors name the part. */
const volume = z.unknown().transform((v, ctx): VolumeSpec => {
  let obj = v;
  if (typeof v === 'string') {
    const parts = v.split(':');
    const mode = parts.length === 3 ? parts[2] : 'rw';
    if (parts.length < 2 || parts.length > 3 || (mode !== 'ro' && mode !== 'rw')) {
      ctx.addIssue({ code: 'custom', message: `expected SOURCE:TARGET or SOURCE:TARGET:ro|rw, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    obj = { source: parts[0], target: parts[1], readOnly: mode === 'ro' };
  }
  const r = volumeObject.safeParse(obj);
  if (!r.success) {
    for (const i of r.error.issues) ctx.addIssue({ code: 'custom', message: i.message, path: i.path });
    return z.NEVER;
  }
  return r.data;
});

/**
 * The ulimit names Docker knows (`docker run --ulimit`: RLIMIT_* of setrlimit(2) without the
 * prefix, lower case; checked against Docker 20.10, which refuses `as` too). Any other name
 * fails the container's start.
 */
export const ULIMIT_NAMES = ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'] as const;

/** Compose `ulimits`: `memlock: -1` (soft = hard; -1 is unlimited) or `nofile: {soft, hard}`. */
const ulimitValue = z.number().int().min(-1);
const ulimit = z.union([
  ulimitValue.transform((n) => ({ soft: n, hard: n })),
  z.object({ soft: ulimitValue, hard: ulimitValue }).strict()
    // -1 is unlimited: a soft limit above the hard one is refused by the kernel at start.
    .refine((u) => u.hard === -1 || (u.soft !== -1 && u.soft <= u.hard), { message: 'soft must not exceed hard (-1 is unlimited)', path: ['soft'] }),
]);

export const containerOptionsShape = {
  /** Replaces the image's CMD (Docker `Cmd`, Compose `command`). */
  command: z.array(z.string()).optional(),
  /** Replaces the image's ENTRYPOINT. */
  entrypoint: z.array(z.string()).optional(),
  volumes: z.array(volume).max(64).default([]),
  /** /dev/shm size in MiB (`--shm-size`); default: the engine's (64 MiB). */
  shmSizeMb: z.number().int().min(1).max(1_048_576).optional(),
  /** `--ipc`: host only on hosts whose agent config allows it. */
  ipc: z.enum(['private', 'shareable', 'host']).optional(),
  ulimits: z.record(z.string(), ulimit).superRefine((u, ctx) => {
    for (const k of Object.keys(u)) {
      if (!(ULIMIT_NAMES as readonly string[]).includes(k)) ctx.addIssue({ code: 'custom', message: `a ulimit name: ${ULIMIT_NAMES.join(', ')}`, path: [k] });
    }
  }).default({}),
  /** `--user`: NAME, UID or UID:GID. */
  user: z.string().regex(/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$/, 'NAME, UID or UID:GID').optional(),
  /**
   * Env values read by the agent from files on its host when it creates the container
   * (e.g. HF_TOKEN: /etc/warmpool/secrets/hf_token): the registry holds only the path.
   */
  secretEnv: z.record(envName, absPath).default({}),
  /** Only hosts whose labels include all of these take instances of the service. */
  placement: z.object({ hostLabels: z.record(z.string(), z.string()).default({}) }).strict().prefault({}),
};

/** `resources.gpus`: GPUs per instance, each exclusively its own (0: none). */
export const gpusPerInstance = z.number().int().min(0).max(64).default(0);

/** True when a host with these labels may run the service (placement.hostLabels all match). */
export function placementAllows(placement: { hostLabels: Record<string, string> }, hostLabels: Record<string, string>): boolean {
  return Object.entries(placement.hostLabels).every(([k, v]) => hostLabels[k] === v);
}
