import { readFile } from 'node:fs/promises';
import { Document as YamlDocument, isScalar, parseAllDocuments, visit as visitYaml } from 'yaml';
import { parseServicesFile, Registry, type KvStore, type ServiceSpec } from '@warmpool/registry';
import { computeStatus, poolCost, poolView } from '@warmpool/registry';
import { renderStatus } from './status.js';
import { formatDuration } from './durations.js';

/** Output sink, so commands are testable without a terminal. */
export interface Io { out(s: string): void; err(s: string): void }

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** Reads and validates a services file (YAML or JSON); errors name the field path. */
export async function loadServicesFile(file: string): Promise<ServiceSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  // Merge keys (`<<: *common`) as Compose files use them. Empty documents (a trailing ---)
  // do not count.
  const docs = parseAllDocuments(text, { prettyErrors: true, merge: true });
  const all = Array.isArray(docs) ? docs : [docs];
  const errors = all.flatMap((d) => d.errors);
  if (errors.length) throw new CliError(`${file}: not valid YAML: ${errors[0]!.message}`);
  const filled = all.filter((d) => d.contents !== null && !(isScalar(d.contents) && d.contents.value === null));
  if (filled.length > 1) throw new CliError(`${file}: holds ${filled.length} YAML documents (separated by ---); put every service in one document's services list`);
  try {
    doc = filled[0]?.toJS() ?? null;
  } catch (err) {
    throw new CliError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) throw new CliError(`${file}: is empty; a services file holds a services list (see docs/model-servers.md)`);
  const r = parseServicesFile(doc);
  if (!r.ok) throw new CliError(`${file}: invalid services file:\n${r.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
  return r.services;
}

/**
 * `warmpool apply --dry-run` with no registry reachable: the file is validated (errors name
 * the field path) and its services listed; no diff, and the output says why.
 */
export async function validateOffline(io: Io, opts: { file: string; json?: boolean; unreachable: string }): Promise<void> {
  const services = await loadServicesFile(opts.file);
  if (opts.json) return io.out(JSON.stringify({ dryRun: true, valid: true, services: services.map((s) => s.name), diff: null, registry: opts.unreachable }));
  io.out(`${opts.file}: valid, ${services.length} service${services.length === 1 ? '' : 's'} (${services.map((s) => s.name).join(', ')})`);
  io.out(`no diff: ${opts.unreachable}`);
}

export async function apply(store: KvStore, prefix: string, io: Io, opts: { file: string; prune?: boolean; dryRun?: boolean; json?: boolean }): Promise<void> {
  const services = await loadServicesFile(opts.file);
  const reg = new Registry(store, { prefix });
  try {
    const current = new Map((await reg.listServices()).map((s) => [s.name, s]));
    const changes: { service: string; action: 'create' | 'update' | 'unchanged' | 'delete'; fields?: FieldChange[] }[] = [];
    const puts: ServiceSpec[] = [];
    const deletes: string[] = [];
    for (const s of services) {
      const cur = current.get(s.name);
      // Compared field by field: a stored record with its keys in another order is unchanged.
      const fields = cur ? fieldChanges(cur, s) : [];
      const action = !cur ? 'create' : fields.length ? 'update' : 'unchanged';
      changes.push({ service: s.name, action, ...(action === 'update' ? { fields } : {}) });
      if (action !== 'unchanged') puts.push(s);
    }
    if (opts.prune) {
      for (const name of current.keys()) {
        if (services.some((s) => s.name === name)) continue;
        changes.push({ service: name, action: 'delete' });
        deletes.push(name);
      }
    }
    // All changes in one transaction (a usual file): applied whole or not at all.
    if (!opts.dryRun) {
      await reg.applyServices(puts, deletes);
      await reg.clusterSecret();
    }
    if (opts.json) io.out(JSON.stringify({ dryRun: Boolean(opts.dryRun), changes }));
    else {
      for (const c of changes) {
        io.out(`${c.service}: ${c.action}${opts.dryRun ? ' (dry run)' : ''}`);
        for (const f of c.fields ?? []) io.out(`  ${f.path}: ${shown(f.from)} -> ${shown(f.to)}`);
      }
    }
  } finally {
    await reg.close();
  }
}

/** One field of a service that an apply changes (values as stored; undefined: absent). */
export interface FieldChange { path: string; from: unknown; to: unknown }

/**
 * The fields that differ between two records, as dotted paths to the smallest differing
 * object member (arrays compare whole), in the new record's key order then removed keys.
 */
export function fieldChanges(from: unknown, to: unknown, at = ''): FieldChange[] {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(from) && isObj(to)) {
    const keys = [...Object.keys(to), ...Object.keys(from).filter((k) => !(k in to))];
    return keys.flatMap((k) => fieldChanges(from[k], to[k], at ? `${at}.${k}` : k));
  }
  return JSON.stringify(from) === JSON.stringify(to) ? [] : [{ path: at, from, to }];
}

/** A value for a diff line: JSON, long ones shortened; absent is "(none)". */
function shown(v: unknown): string {
  if (v === undefined) return '(none)';
  const j = JSON.stringify(v);
  return j.length > 80 ? `${j.slice(0, 77)}...` : j;
}

/**
 * `warmpool export`: the registry's services as a services file (YAML; `--json`: JSON), in
 * name order, every default written out, so `warmpool apply -f` of it changes nothing.
 */
export async function exportServices(store: KvStore, prefix: string, io: Io, opts: { json?: boolean }): Promise<void> {
  const reg = new Registry(store, { prefix });
  try {
    const services = (await reg.listServices()).sort((a, b) => a.name.localeCompare(b.name));
    if (!services.length) throw new CliError(`no service in the registry under ${prefix}`);
    if (opts.json) return io.out(JSON.stringify({ services }, null, 2));
    // A key spelled `<<` (in a warm-up body, say) is quoted: plain, apply would read it as a merge key.
    const doc = new YamlDocument({ services });
    visitYaml(doc, { Pair(_, pair) { if (isScalar(pair.key) && pair.key.value === '<<') pair.key.type = 'QUOTE_DOUBLE'; } });
    io.out(`# warmpool export, ${new Date().toISOString()}: ${services.length} service${services.length === 1 ? '' : 's'} under ${prefix}\n${doc.toString()}`.trimEnd());
  } finally {
    await reg.close();
  }
}

async function withCache<T>(store: KvStore, prefix: string, fn: (reg: Registry) => Promise<T>): Promise<T> {
  const reg = new Registry(store, { prefix, cache: { resyncMs: 3_600_000 } });
  try {
    await reg.cache();
    return await fn(reg);
  } finally {
    await reg.close();
  }
}

export async function status(store: KvStore, prefix: string, io: Io, opts: { json?: boolean; now?: number; registry?: string }): Promise<void> {
  await withCache(store, prefix, async (reg) => {
    const s = computeStatus(await reg.cache(), opts.now ?? Date.now());
    io.out(opts.json ? JSON.stringify(s) : renderStatus(s, { prefix, ...(opts.registry ? { registry: opts.registry } : {}) }));
  });
}

export async function sessions(store: KvStore, prefix: string, io: Io, opts: { json?: boolean; service?: string; now?: number }): Promise<void> {
  const now = opts.now ?? Date.now();
  await withCache(store, prefix, async (reg) => {
    const c = await reg.cache();
    const list = [...c.sessions.values()].map((v) => v.value).filter((s) => !opts.service || s.service === opts.service);
    if (opts.json) return io.out(JSON.stringify(list));
    if (!list.length) return io.out(`(no sessions under prefix ${prefix})`);
    const rows = [['SESSION', 'SERVICE', 'INSTANCE', 'HOST', 'AGE', 'EXPIRES IN'], ...list.map((s) => [s.id, s.service, s.instanceId, s.host, formatDuration(now - s.createdAt), formatDuration(s.expiresAt - now)])];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    io.out(rows.map((r) => r.map((x, i) => x.padEnd(w[i]!)).join('  ').trimEnd()).join('\n'));
  });
}

export async function drain(store: KvStore, prefix: string, io: Io, opts: { host: string; undo?: boolean; json?: boolean }): Promise<void> {
  if (!/^[A-Za-z0-9._-]{1,253}$/.test(opts.host)) throw new CliError(`HOST: ${JSON.stringify(opts.host)} is not a valid host id`);
  const reg = new Registry(store, { prefix });
  try {
    const known = (await store.get(reg.keys.host(opts.host))) !== undefined;
    await reg.setDrain(opts.host, !opts.undo);
    const msg = { host: opts.host, draining: !opts.undo, known };
    io.out(opts.json ? JSON.stringify(msg) : `${opts.host}: ${opts.undo ? 'accepting new instances again' : 'draining (no new instances; claimed ones finish)'}${known ? '' : ' (note: no agent has registered this host yet)'}`);
  } finally {
    await reg.close();
  }
}

const kinds = ['service', 'host', 'instance', 'session'] as const;

export async function inspect(store: KvStore, prefix: string, io: Io, opts: { kind: string; id: string }): Promise<void> {
  if (!(kinds as readonly string[]).includes(opts.kind)) throw new CliError(`KIND must be one of ${kinds.join(', ')}, got ${JSON.stringify(opts.kind)}`, 2);
  await withCache(store, prefix, async (reg) => {
    const c = await reg.cache();
    let v: unknown;
    switch (opts.kind) {
      case 'service': {
        const spec = c.services.get(opts.id)?.value;
        // The spec, and the pool's decision with what it rests on (docs/pool-sizing.md).
        v = spec && { ...spec, pool: poolView(c, spec, Date.now(), { explain: true }), cost: poolCost(c, spec) };
        break;
      }
      case 'host': v = c.hosts.get(opts.id)?.value; break;
      case 'instance': {
        const i = c.instances.get(opts.id)?.value;
        v = i && { ...i, claim: c.claims.get(opts.id)?.value ?? null };
        break;
      }
      case 'session': v = c.sessions.get(opts.id)?.value ?? c.tombstones.get(opts.id)?.value; break;
    }
    if (v === undefined) throw new CliError(`${opts.kind} ${JSON.stringify(opts.id)} not found`, 2);
    io.out(JSON.stringify(v, null, 2));
  });
}
