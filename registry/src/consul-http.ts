/**
 * A thin, typed layer over the `consul` npm client for ConsulKvStore: KV reads with the
 * X-Consul-Index header (blocking queries included), /v1/txn, sessions, and the mapping of
 * Consul failures onto RegistryError. Private helper of consul-kv.ts.
 */
import { EventEmitter } from 'node:events';
import Consul from 'consul';
import { RegistryError, WarmpoolError, unavailable } from './errors.js';

/** A KV entry as Consul returns it (Value already base64-decoded by the client). */
export interface ConsulItem {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
  CreateIndex: number;
  Session?: string;
}

export interface ConsulTxnOp {
  KV: { Verb: string; Key: string; Value?: string; Index?: number; Session?: string };
}

export type ConsulTxnOutcome =
  | { ok: true; results: { KV?: ConsulItem }[] }
  | { ok: false; errors: { OpIndex: number; What: string }[] };

interface PapiResponse { statusCode: number; headers: Record<string, string | string[] | undefined>; body?: unknown }
interface PapiError extends Error { isPapi?: boolean; isResponse?: boolean; isAbort?: boolean; isTimeout?: boolean; response?: PapiResponse }

/**
 * papi (under the consul client) aborts a request when its ctx emits 'cancel', and returns
 * `[response, body]` instead of the body when ctx.includeResponse is set.
 */
export class RequestCtx extends EventEmitter {
  readonly includeResponse = true;
  canceled = false;
  cancel(): void {
    if (this.canceled) return;
    this.canceled = true;
    this.emit('cancel');
  }
}

/** The slice of the consul client we call, with the options its typings leave out. */
interface RawClient {
  kv: { get(o: Record<string, unknown>): Promise<[PapiResponse, ConsulItem[] | undefined] | [PapiResponse]> };
  transaction: { create(ops: ConsulTxnOp[], o: Record<string, unknown>): Promise<{ Results: { KV?: ConsulItem }[] | null }> };
  session: {
    create(o: Record<string, unknown>): Promise<{ ID: string }>;
    renew(o: Record<string, unknown>): Promise<{ TTL?: string }[]>;
    destroy(o: Record<string, unknown>): Promise<unknown>;
  };
  destroy(): void;
}

export const statusOf = (err: unknown): number | undefined => (err as PapiError)?.response?.statusCode;

export function mapConsulError(err: unknown, what: string): WarmpoolError {
  if (WarmpoolError.is(err)) return err;
  const e = err as PapiError;
  const status = statusOf(err);
  const body = typeof e?.response?.body === 'string' ? e.response.body : e?.message;
  if (status === 403 || status === 401) {
    return new RegistryError('WARMPOOL_INVALID_CONFIG', `${what}: Consul denied access (${body}); check the ACL token`, { cause: err });
  }
  if (status === 400 || status === 413) {
    return new RegistryError('WARMPOOL_INVALID_CONFIG', `${what}: Consul rejected the request (${body})`, { cause: err });
  }
  if (e?.isAbort) return new RegistryError('WARMPOOL_REGISTRY_CLOSED', `${what}: request aborted (store closing)`, { cause: err });
  // Connection refused/reset, timeouts, 5xx, 429 (rate limit), no leader: retryable.
  const u = unavailable(err);
  u.message = `${what}: ${u.message}${status ? ` (HTTP ${status})` : ''}`;
  return u;
}

/** Consul's X-Consul-Index; Consul says a 0 must be treated as 1. */
function indexOf(res: PapiResponse): bigint {
  const raw = res.headers['x-consul-index'];
  const v = BigInt(String(Array.isArray(raw) ? raw[0] : raw ?? '0'));
  return v > 0n ? v : 1n;
}

export class ConsulHttp {
  private readonly client: RawClient;

  constructor(url: string, token: string | undefined, private readonly timeoutMs: number) {
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    this.client = new Consul({
      host: u.hostname,
      port: Number(u.port || (secure ? 443 : 80)),
      secure,
      ...(token ? { defaults: { token } } : {}),
    }) as unknown as RawClient;
  }

  /** A key or a prefix (recurse) with the index it was read at. A 404 is an empty result. */
  async read(key: string, o: { recurse: boolean; index?: bigint; waitSec?: number; ctx?: RequestCtx }): Promise<{ index: bigint; items: ConsulItem[] }> {
    const blocking = o.index !== undefined && o.waitSec !== undefined;
    const opts: Record<string, unknown> = {
      key,
      recurse: o.recurse,
      ctx: o.ctx ?? new RequestCtx(),
      // Consul adds up to wait/16 of jitter to a blocking query.
      timeout: blocking ? o.waitSec! * 1000 * (17 / 16) + this.timeoutMs : this.timeoutMs,
    };
    if (blocking) {
      opts.index = o.index!.toString();
      opts.wait = `${o.waitSec}s`;
    }
    const [res, body] = await this.client.kv.get(opts);
    const items = Array.isArray(body) ? body : body ? [body as ConsulItem] : [];
    return { index: indexOf(res), items };
  }

  /** The KV store's current index: a read of a key that never exists returns the table index. */
  async currentIndex(): Promise<bigint> {
    return (await this.read('_warmpool-index-probe_', { recurse: false })).index;
  }

  async txn(ops: ConsulTxnOp[]): Promise<ConsulTxnOutcome> {
    try {
      const res = await this.client.transaction.create(ops, { timeout: this.timeoutMs });
      return { ok: true, results: res?.Results ?? [] };
    } catch (err) {
      const body = (err as PapiError)?.response?.body as { Errors?: { OpIndex: number; What: string }[] } | undefined;
      if (statusOf(err) === 409 && body?.Errors) return { ok: false, errors: body.Errors };
      throw err;
    }
  }

  async createSession(ttlSec: number, name: string): Promise<string> {
    const res = await this.client.session.create({ ttl: `${ttlSec}s`, behavior: 'delete', lockdelay: '0s', name, timeout: this.timeoutMs });
    return res.ID;
  }

  /** Remaining TTL in seconds, or 0 when Consul no longer knows the session. */
  async renewSession(id: string): Promise<number> {
    try {
      const res = await this.client.session.renew({ id, timeout: this.timeoutMs });
      const ttl = res?.[0]?.TTL;
      return ttl ? parseDurationSec(ttl) : 0;
    } catch (err) {
      if (statusOf(err) === 404) return 0;
      throw err;
    }
  }

  async destroySession(id: string): Promise<void> {
    await this.client.session.destroy({ id, timeout: this.timeoutMs });
  }

  close(): void {
    this.client.destroy();
  }
}

/** "10s", "1m30s", "1.5h" -> seconds. */
export function parseDurationSec(d: string): number {
  let total = 0;
  for (const m of d.matchAll(/([\d.]+)(ms|h|m|s)/g)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
  }
  return total;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
