import { computeStatus, Registry, type KvStore } from '@warmpool/registry';
import { CliError, type Io } from './commands.js';
import { formatDuration } from './durations.js';

export interface SessionCreateOptions {
  service: string;
  /** Router base URL, e.g. http://127.0.0.1:8080. */
  router: string;
  /** Seconds to wait for a booting instance (the router caps it at its own maximum). */
  waitSec: number;
  /** Print only the session id on stdout (for `SID=$(...)`). */
  quiet?: boolean;
  json?: boolean;
  /** Milliseconds between progress lines on stderr while waiting (default 3000). */
  progressEveryMs?: number;
}

/**
 * `warmpool sessions create SERVICE --router URL`: POST /v1/sessions?wait=SEC to the router,
 * and while the router waits for an instance to finish booting, a progress line on stderr
 * every few seconds from the registry (ready / booting counts, the oldest boot's elapsed
 * time against the typical boot), so a wait is never silent; with no registry (`store`
 * undefined) the line says only how long it has waited. Prints the session (stdout).
 * Errors: the router's `{"error":{"code","message"}}` as a CliError; an unreachable router
 * names the URL.
 */
export async function createSession(store: KvStore | undefined, prefix: string, io: Io, o: SessionCreateOptions): Promise<void> {
  let base: URL;
  try {
    base = new URL(o.router);
  } catch {
    throw new CliError(`--router must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(o.router)}`);
  }
  const reg = store && new Registry(store, { prefix, cache: { resyncMs: 3_600_000 } });
  const started = Date.now();
  const progress = async (): Promise<void> => {
    if (!reg) return io.err(`waiting ${formatDuration(Date.now() - started)} for an instance of ${o.service} (the router waits up to ${o.waitSec} s)`);
    const cache = await reg.cache();
    const s = computeStatus(cache, Date.now()).services.find((v) => v.name === o.service);
    const waited = formatDuration(Date.now() - started);
    if (!s) return io.err(`waiting ${waited}: service ${o.service} is not in the registry under ${prefix}`);
    const oldest = Math.max(0, ...s.boots.map((b) => b.elapsedMs));
    const typical = s.typicalBootMs === null ? '' : `, typical boot ${formatDuration(s.typicalBootMs)}`;
    io.err(`waiting ${waited} for an instance of ${o.service}: ${s.ready} ready, ${s.booting} booting${s.booting ? ` (the oldest for ${formatDuration(oldest)}${typical})` : ''}`);
  };
  const timer = setInterval(() => void progress().catch(() => undefined), o.progressEveryMs ?? 3_000);
  try {
    const url = new URL('/v1/sessions', base);
    url.searchParams.set('wait', String(o.waitSec));
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: o.service }) });
    } catch (err) {
      const why = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      // The Fetch standard's "bad ports" (1, 7, 9, ..., 6000, ...) are refused before any connect.
      if (why === 'bad port') throw new CliError(`--router ${base.origin}: HTTP clients refuse port ${base.port} (a port the Fetch standard blocks); run the router on another port`);
      throw new CliError(`cannot reach the router at ${base.origin}: ${why}`);
    }
    const body = (await res.json().catch(() => ({}))) as { sessionId?: string; instanceId?: string; expiresAt?: string | number; error?: { code?: string; message?: string } };
    if (res.status !== 201 || !body.sessionId) {
      const retry = res.headers.get('retry-after');
      // A service the router does not know is "not found" (exit 2, as cli/README.md says).
      throw new CliError(`the router answered ${res.status}: ${body.error?.message ?? 'no session'}${body.error?.code ? ` (${body.error.code})` : ''}${retry ? `; retry after ${retry} s` : ''}`, res.status === 404 ? 2 : 1);
    }
    if (o.quiet) io.out(body.sessionId);
    else if (o.json) io.out(JSON.stringify(body));
    else {
      // The router sends expiresAt as an ISO 8601 time.
      const expires = body.expiresAt === undefined ? NaN : new Date(body.expiresAt).getTime();
      io.out(`session ${body.sessionId} on instance ${body.instanceId} (after ${formatDuration(Date.now() - started)}; expires in ${Number.isFinite(expires) ? formatDuration(expires - Date.now()) : 'unknown'})`);
    }
  } finally {
    clearInterval(timer);
    await reg?.close();
  }
}
