import { closeSync, constants, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { containerOptionsShape, secretHeaders, warmupHeaderIssues, type ServiceSpec, type VolumeSpec } from '@warmpool/registry';
import type { VolumeInfo } from './docker.js';

/**
 * What this host lets services ask of it, from the agent's OWN config (never the registry):
 * whoever can write the registry must not be able to mount `/`, share the host's IPC
 * namespace or read any file of every host.
 */
export interface HostAllowList {
  /** Bind mounts only of these paths or below them (absolute; none by default). */
  hostPaths: readonly string[];
  /** `ipc: host` allowed. */
  ipcHost: boolean;
  /** secretEnv and secretHeaders files only below these directories. */
  secretDirs: readonly string[];
  /** Named volumes only when their name matches one of these globs (`*`, `?`; none by default). */
  volumes: readonly string[];
}

export const DEFAULT_ALLOW: HostAllowList = { hostPaths: [], ipcHost: false, secretDirs: ['/etc/warmpool/secrets'], volumes: [] };

/** File access the checks need (tests pass fakes; the agent uses node:fs). */
export interface HostFiles {
  /** The path with symlinks resolved; undefined when it does not exist. */
  realpath(p: string): string | undefined;
  readFile(p: string): string;
}

/**
 * Largest secret file read: Linux caps one env string at 128 KiB (MAX_ARG_STRLEN), and no
 * token is near 64 KiB.
 */
export const MAX_SECRET_BYTES = 65_536;

/**
 * Reads a secret file: only a regular file of at most MAX_SECRET_BYTES, opened without
 * blocking (a FIFO would otherwise stall the agent until someone writes to it). Errors carry
 * a `code` that names the reason, never the content.
 */
function readSecretFile(p: string): string {
  const fd = openSync(p, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error(`${p} is not a regular file`), { code: st.isDirectory() ? 'EISDIR' : 'not a regular file' });
    if (st.size > MAX_SECRET_BYTES) throw Object.assign(new Error(`${p} is too large`), { code: `larger than ${MAX_SECRET_BYTES} bytes` });
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export const nodeFiles: HostFiles = {
  realpath: (p) => { try { return realpathSync(p); } catch { return undefined; } },
  readFile: readSecretFile,
};

/** The host-dependent part of a pod, once allowed. */
export interface HostGrant {
  /** Host paths replaced by the real paths the check approved (symlinks resolved): the engine mounts those. */
  volumes: VolumeSpec[];
  /** Env values read from the secret files (never logged, never written to the registry). */
  secretEnv: Record<string, string>;
  /**
   * Per warm-up request (same index), header values read from the secret files; only the
   * sidecar of this host's pod receives them. Absent when no request has secretHeaders.
   */
  warmupHeaders?: Record<string, string>[];
}

export type PolicyResult = { ok: true; grant: HostGrant } | { ok: false; reason: string };

/** The container options of a stored spec, as a services file must write them (extra fields ignored). */
const storedOptions = z.object({
  ...containerOptionsShape,
  // What the agent reads from files here, and no credential among the plain headers (a raw
  // write skips `warmpool apply`'s check; such a value is the writer's, already in the
  // registry, but no pod of this host is started with it). The sidecar checks the rest.
  warmup: z.array(z.object({ headers: z.record(z.string(), z.unknown()).optional(), secretHeaders: secretHeaders.optional() }).superRefine((w, ctx) => {
    for (const issue of warmupHeaderIssues(w.headers, w.secretHeaders)) ctx.addIssue({ code: 'custom', ...issue });
  })).optional(),
});

/** True when the volume name matches the glob (`*`: any run of characters, `?`: one). */
export function volumeNameAllowed(name: string, globs: readonly string[]): boolean {
  return globs.some((g) => new RegExp(`^${g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`).test(name));
}

/** `p` is `prefix` or below it (path segments, not string prefixes: /models2 is not under /models). */
export function isUnder(p: string, prefix: string): boolean {
  const a = path.posix.normalize(p);
  const b = path.posix.normalize(prefix).replace(/\/+$/, '') || '/';
  return b === '/' || a === b || a.startsWith(`${b}/`);
}

/**
 * The real path of `p` (symlinks resolved); for a missing path, the real path of its nearest
 * existing ancestor with the missing tail appended, since the engine creates a missing bind
 * source through whatever symlink that ancestor is.
 */
function realOrAncestor(p: string, files: HostFiles): string {
  const tail: string[] = [];
  let at = path.posix.normalize(p);
  for (;;) {
    const real = files.realpath(at);
    if (real !== undefined) return path.posix.join(real, ...tail);
    const up = path.posix.dirname(at);
    if (up === at) return path.posix.join('/', ...tail);
    tail.unshift(path.posix.basename(at));
    at = up;
  }
}

/** Allowed when both the path as written and its real path (symlinks resolved, see realOrAncestor) are under a prefix. */
function allowedPath(p: string, prefixes: readonly string[], files: HostFiles): boolean {
  const real = realOrAncestor(p, files);
  return prefixes.some((x) => isUnder(p, x)) && prefixes.some((x) => isUnder(real, files.realpath(x) ?? x));
}

/**
 * Why this host refuses the existing named volume `volumes[i]`, or undefined when it grants
 * it. A local volume created with driver options (`docker volume create -o type=none -o
 * o=bind -o device=/`, Compose `driver_opts`) mounts what `device` names: a bind of a host
 * path passes allow.hostPaths like a bind mount, whatever its `type` (the kernel ignores the
 * type of a bind); tmpfs without bind is harmless; any other device
 * (a block device, a network share) and any other volume driver are refused.
 */
export function namedVolumeRefusal(i: number, name: string, info: VolumeInfo, allow: HostAllowList, files: HostFiles = nodeFiles): string | undefined {
  const at = `volumes[${i}]: named volume ${name}`;
  if (info.driver !== 'local') return `${at} uses volume driver ${info.driver}; only local volumes are granted on this host`;
  const { device, type, o } = info.options;
  // A bind mount's type is ignored by mount(2) (MS_BIND): tmpfs with o=bind binds `device`.
  const bind = (o ?? '').split(',').some((x) => x.trim() === 'bind' || x.trim() === 'rbind');
  if (!device || (type === 'tmpfs' && !bind)) return undefined;
  if (!bind) return `${at} mounts device ${device} (type ${type ?? 'unknown'}); only binds of allowed host paths are granted on this host`;
  if (!device.startsWith('/') || !allowedPath(device, allow.hostPaths, files)) {
    return `${at} binds host path ${device}, which is not allowed on this host (agent allow.hostPaths: ${allow.hostPaths.length ? allow.hostPaths.join(', ') : 'none'})`;
  }
  const secretDir = secretDirMeeting(realOrAncestor(device, files), allow, files);
  if (secretDir) return `${at} binds host path ${device}, which holds the secret directory ${secretDir} of this host`;
  return undefined;
}

/**
 * The secret directory that `real` (a resolved host path) holds or lies in, if any: mounting
 * it would hand over every service's secrets.
 */
function secretDirMeeting(real: string, allow: HostAllowList, files: HostFiles): string | undefined {
  return allow.secretDirs.find((d) => { const rd = files.realpath(d) ?? d; return isUnder(rd, real) || isUnder(real, rd); });
}

/**
 * Reads one secret file for `field` once it lies under allow.secretDirs: the file the check
 * resolved (symlinks followed) is the one read. The reason names the field and the file only.
 */
function readSecret(field: string, file: string, allow: HostAllowList, files: HostFiles): { ok: true; value: string } | { ok: false; reason: string } {
  if (!allowedPath(file, allow.secretDirs, files)) {
    return { ok: false, reason: `${field}: ${file} is not under a secret directory of this host (agent allow.secretDirs: ${allow.secretDirs.join(', ') || 'none'})` };
  }
  try {
    // A trailing newline (echo > file) is not part of the secret.
    return { ok: true, value: files.readFile(files.realpath(file) ?? file).replace(/\r?\n$/, '') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    return { ok: false, reason: `${field}: cannot read the secret file ${file} on this host (${code})` };
  }
}

/** What Node's HTTP client accepts in a header value (anything else would throw when sending). */
const HEADER_VALUE = /^[\t\u0020-\u007e\u0080-\u00ff]*$/;

/** The warm-up header values of `warmup[i].secretHeaders`, read from their files. */
function grantWarmupHeaders(
  warmup: readonly { secretHeaders?: Record<string, string | { file: string; prefix: string }> | undefined }[],
  allow: HostAllowList, files: HostFiles,
): { ok: true; headers?: Record<string, string>[] } | { ok: false; reason: string } {
  if (!warmup.some((w) => w.secretHeaders && Object.keys(w.secretHeaders).length)) return { ok: true };
  const headers: Record<string, string>[] = [];
  for (const [i, w] of warmup.entries()) {
    const values: Record<string, string> = {};
    for (const [name, h] of Object.entries(w.secretHeaders ?? {})) {
      const { file, prefix } = typeof h === 'string' ? { file: h, prefix: '' } : h;
      const field = `warmup[${i}].secretHeaders.${name}`;
      const read = readSecret(field, file, allow, files);
      if (!read.ok) return read;
      if (!HEADER_VALUE.test(read.value)) return { ok: false, reason: `${field}: the secret file ${file} holds a line break or control character (not a header value)` };
      values[name] = prefix + read.value;
    }
    headers.push(values);
  }
  return { ok: true, headers };
}

/**
 * Checks a service's container options against this host's allow-list and reads its secret
 * files (secretEnv, warm-up secretHeaders). A refusal's reason names the field and the path,
 * never a secret's value (a read error's message names the file only).
 */
export function grantHostOptions(stored: ServiceSpec, allow: HostAllowList, files: HostFiles = nodeFiles): PolicyResult {
  // The registry's JSON is whatever its writer put there (`warmpool apply` validates, a raw
  // write does not): the options are checked again here, by the services file's own schema.
  const checked = storedOptions.safeParse(stored);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const at = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
    return { ok: false, reason: `${at || 'spec'}: ${issue.message}` };
  }
  const spec = checked.data;
  const volumes: VolumeSpec[] = [];
  for (const [i, v] of spec.volumes.entries()) {
    if (!v.source.startsWith('/')) {
      if (!volumeNameAllowed(v.source, allow.volumes)) {
        return {
          ok: false,
          reason: `volumes[${i}]: named volume ${v.source} is not allowed on this host (agent allow.volumes: ${allow.volumes.length ? allow.volumes.join(', ') : 'none'})`,
        };
      }
      volumes.push(v);
      continue;
    }
    if (!allowedPath(v.source, allow.hostPaths, files)) {
      return {
        ok: false,
        reason: `volumes[${i}]: host path ${v.source} is not allowed on this host (agent allow.hostPaths: ${allow.hostPaths.length ? allow.hostPaths.join(', ') : 'none'})`,
      };
    }
    // An allowed prefix may hold the secret files: mounting them would hand over every service's secrets.
    const real = realOrAncestor(v.source, files);
    const secretDir = secretDirMeeting(real, allow, files);
    if (secretDir) return { ok: false, reason: `volumes[${i}]: host path ${v.source} holds the secret directory ${secretDir} of this host` };
    // The engine mounts the path the check approved, not the one written: a symlink swapped
    // in after the check changes nothing (docs/model-servers.md, residual risk). A `:` there
    // (from a symlink's target) would add a mode to the bind, as in the spec.
    if (real.includes(':')) return { ok: false, reason: `volumes[${i}]: host path ${v.source} resolves to ${real}, which holds ':'` };
    volumes.push({ ...v, source: real });
  }
  if (spec.ipc === 'host' && !allow.ipcHost) return { ok: false, reason: 'ipc: host is not allowed on this host (agent allow.ipcHost is false)' };
  const secretEnv: Record<string, string> = {};
  for (const [name, file] of Object.entries(spec.secretEnv)) {
    const read = readSecret(`secretEnv.${name}`, file, allow, files);
    if (!read.ok) return read;
    // The engine refuses such a value and quotes it whole in its error: never send it.
    if (read.value.includes('\0')) return { ok: false, reason: `secretEnv.${name}: the secret file ${file} holds a NUL byte, which an environment variable cannot carry` };
    secretEnv[name] = read.value;
  }
  const warmup = grantWarmupHeaders(spec.warmup ?? [], allow, files);
  if (!warmup.ok) return warmup;
  return { ok: true, grant: { volumes, secretEnv, ...(warmup.headers ? { warmupHeaders: warmup.headers } : {}) } };
}

/** The secret values of a grant (env and warm-up headers), for redact(). */
export function grantSecrets(grant: HostGrant): string[] {
  return [...Object.values(grant.secretEnv), ...(grant.warmupHeaders ?? []).flatMap((h) => Object.values(h))];
}

/**
 * `text` with every secret value replaced by `[secret]`, also where a message quotes it
 * escaped (Go's %q turns a control byte into `\x00`, `"` into `\"`): the value's JSON form
 * and each run of 4 or more printable characters between characters a quoting may escape
 * are replaced too, so at most those characters (`"`, `\`, control bytes) remain. For engine errors, which may quote a container's
 * environment, before they reach a log or the registry.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  const pieces = new Set<string>();
  for (const v of secrets) {
    if (!v) continue;
    pieces.add(v);
    // Quoted forms: JSON's and Go's %q escape `"` and `\\`, and control bytes differently.
    pieces.add(JSON.stringify(v).slice(1, -1));
    // Runs between anything a quoting may escape: whatever the escaping, these appear as they are.
    for (const p of v.split(/[^\x20-\x7e]+|["\\]/)) if (p.length >= 4) pieces.add(p);
  }
  // Longest first, so a value is replaced whole before any of its parts.
  for (const p of [...pieces].sort((a, b) => b.length - a.length)) out = out.split(p).join('[secret]');
  return out;
}
