import {
  instanceKey, sessionCredential,
  type CacheChange, type Registry, type RegistryCache, type SessionRecord,
} from '@warmpool/registry';
import { RouterError } from './errors.js';

/** How long a request waits for the registry cache before answering 503. */
const CACHE_WAIT_MS = 5_000;
/** Credentials kept (two HMACs saved per request); cleared wholesale when full. */
const MAX_CREDENTIALS = 100_000;

/** What the proxy needs to forward one request of a session. */
export interface SessionRoute {
  session: SessionRecord;
  credential: string;
}

/**
 * Answers "where does session X go" from the watch cache, with no registry round trip on a
 * hit: a session created a moment ago through another router, not yet in the cache, costs
 * one store read. Also derives the credential the instance's sidecar checks, once per
 * session.
 */
export class SessionDirectory {
  private cacheRef: RegistryCache | undefined;
  private following = false;
  private closed = false;
  private secret: string | undefined;
  private credentials = new Map<string, string>();
  private onChange = (c: CacheChange): void => {
    if (c.kind === 'sessions' && c.type === 'delete') this.credentials.delete(c.parts[0]!);
    if (c.kind === 'cluster') { this.secret = undefined; this.credentials.clear(); }
  };

  constructor(
    private readonly registry: Registry,
    private readonly now: () => number = Date.now,
    /** Called once, when the cache first goes live (wires the 'ready' events). */
    private readonly onLive?: (cache: RegistryCache) => void,
  ) {}

  /** The cache once it is live (waits at most a few seconds, then 503). */
  async cache(): Promise<RegistryCache> {
    if (this.cacheRef) return this.cacheRef;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RouterError('WARMPOOL_REGISTRY_UNAVAILABLE', 'the registry is unavailable')), CACHE_WAIT_MS);
    });
    try {
      return this.adopt(await Promise.race([this.registry.cache(), timeout]));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Adopts the cache whenever it goes live, however long the registry takes (etcd down when
   * the router starts): /readyz turns ready by itself, without waiting for a request that
   * needs the cache. Idempotent.
   */
  follow(): void {
    if (this.following || this.cacheRef) return;
    this.following = true;
    const attempt = (): void => {
      if (this.cacheRef || this.closed) return;
      this.registry.cache().then((c) => { if (!this.closed) this.adopt(c); }, () => {
        if (!this.closed) setTimeout(attempt, 1000).unref();
      });
    };
    attempt();
  }

  private adopt(c: RegistryCache): RegistryCache {
    if (!this.cacheRef) {
      this.cacheRef = c;
      c.on('change', this.onChange);
      this.onLive?.(c);
    }
    return this.cacheRef;
  }

  /** The cache if already live, without waiting (hot path). */
  cached(): RegistryCache | undefined {
    return this.cacheRef;
  }

  /**
   * The router's link to the registry, as /readyz and the registry_connected metric report
   * it: `not-ready` before the first full list (and once closed), `disconnected` while the
   * watch is down (established sessions served from the copy), else `live`.
   */
  link(): 'not-ready' | 'disconnected' | 'live' {
    const cache = this.cacheRef;
    if (!cache || cache.syncedAt === null || cache.state === 'closed') return 'not-ready';
    return cache.disconnectedSince !== null ? 'disconnected' : 'live';
  }

  /**
   * An active session's record straight from the cache, when it is there and not past its
   * lifetime: the synchronous hot path. Undefined means "ask `lookup`".
   */
  fromCache(id: string): SessionRecord | undefined {
    const s = this.cacheRef?.sessions.get(id)?.value;
    if (!s || s.expiresAt <= this.now()) return undefined;
    return s;
  }

  /** An active session, or a RouterError: 404 unknown, 410 ended or expired. */
  async lookup(id: string): Promise<SessionRecord> {
    const cached = this.fromCache(id);
    if (cached) return cached;
    await this.cache();
    const r = await this.registry.lookupSession(id);
    if (r.state === 'active') {
      if (r.session.expiresAt > this.now()) return r.session;
      await this.registry.endSession(id, 'expired');
      throw new RouterError('WARMPOOL_SESSION_ENDED', 'session expired');
    }
    if (r.state === 'ended') {
      throw new RouterError('WARMPOOL_SESSION_ENDED', `session ${r.tombstone.reason === 'ended' ? 'was ended' : r.tombstone.reason === 'expired' ? 'expired' : 'lost its instance'}`);
    }
    throw new RouterError('WARMPOOL_UNKNOWN_SESSION', 'no such session');
  }

  /** The credential for this session at its instance (cached per session). */
  credentialFor(s: SessionRecord): string | undefined {
    const have = this.credentials.get(s.id);
    if (have) return have;
    const secret = this.secret ?? this.cacheRef?.cluster?.secret;
    if (!secret) return undefined;
    this.secret = secret;
    if (this.credentials.size >= MAX_CREDENTIALS) this.credentials.clear();
    const cred = sessionCredential(instanceKey(secret, s.instanceId), s.id);
    this.credentials.set(s.id, cred);
    return cred;
  }

  /** Like credentialFor, creating the cluster secret if nobody has yet (first start). */
  async credential(s: SessionRecord): Promise<string> {
    const c = this.credentialFor(s);
    if (c) return c;
    this.secret = await this.registry.clusterSecret();
    return this.credentialFor(s)!;
  }

  /** Records traffic (batched keep-alive of the session lease). */
  touch(s: SessionRecord): void {
    this.registry.touch(s);
  }

  close(): void {
    this.closed = true;
    this.cacheRef?.off('change', this.onChange);
  }
}
