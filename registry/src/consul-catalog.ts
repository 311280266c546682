import Consul from 'consul';
import type { RegistryCache } from './cache.js';
import type { InstanceRecord } from './types.js';

export interface CatalogOptions {
  host: string;
  port: number;
  token?: string;
  /** TTL of the checks; they are passed every third of it. */
  checkTtlSec?: number;
  onError?: (err: unknown) => void;
}

/**
 * Asked before each TTL update: the check's status and why. `warning` keeps the service in
 * Consul DNS (unless the DNS config asks for passing only) and tells operators it is degraded.
 */
export type HealthProbe = () => Promise<{ status: 'passing' | 'warning' | 'critical'; note: string }>;

interface Desired { serviceId: string; name: string; address: string; port: number; passing: boolean; note: string; meta: Record<string, string>; probe?: HealthProbe }

const TAG = 'warmpool';

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/**
 * Mirrors Warmpool instances (and routers) into the local Consul agent's catalog as services
 * with TTL checks, so Consul DNS answers `chatbot.service.consul` with exactly the instances a
 * new session could get (ready and unclaimed: passing) and `warmpool-router.service.consul`
 * with the live routers. Anti-entropy: every sync compares the agent's services with the
 * desired set and fixes the difference, so a restarted Consul agent is repopulated.
 */
export class ConsulCatalog {
  private readonly consul: Consul;
  private readonly ttlSec: number;
  private desired = new Map<string, Desired>();
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private detach: (() => void) | undefined;
  /** Services this catalog registered carry meta.owner = this; others are never touched. */
  private owner: string | undefined;

  constructor(private readonly opts: CatalogOptions) {
    this.consul = new Consul({ host: opts.host, port: opts.port, ...(opts.token ? { defaults: { token: opts.token } } : {}) });
    this.ttlSec = opts.checkTtlSec ?? 15;
  }

  /** Publishes the instances of `hostId` from the cache, following its changes. */
  followHost(cache: RegistryCache, hostId: string): void {
    this.owner ??= `host:${hostId}`;
    const compute = (): void => {
      const next = new Map<string, Desired>();
      for (const [key, d] of this.desired) if (d.meta.kind === 'router') next.set(key, d);
      for (const { value: i } of cache.instances.values()) {
        if (i.host !== hostId || !i.address) continue;
        const d = instanceEntry(i, cache.claims.has(i.id));
        next.set(d.serviceId, d);
      }
      this.desired = next;
      this.schedule();
    };
    const onChange = (c: { kind: string }): void => { if (c.kind === 'instances' || c.kind === 'claims') compute(); };
    cache.on('change', onChange);
    cache.on('synced', compute);
    this.detach = () => { cache.off('change', onChange); cache.off('synced', compute); };
    compute();
    this.start();
  }

  /**
   * Registers a router as service `warmpool-router`: passing while this process lives and,
   * with a `probe`, only while the probe says so (asked before every TTL pass).
   */
  addRouter(id: string, address: string, port: number, probe?: HealthProbe): void {
    this.owner ??= `router:${id}`;
    const serviceId = `warmpool-router-${id}`;
    this.desired.set(serviceId, {
      serviceId, name: 'warmpool-router', address, port, passing: true, note: 'router up', meta: { kind: 'router', router: id }, ...(probe ? { probe } : {}),
    });
    this.start();
    this.schedule();
  }

  /** Asks every probe again now (a router's workers changed), instead of at the next TTL pass. */
  recheck(): void {
    this.schedule();
  }

  private start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.schedule(), (this.ttlSec * 1000) / 3);
    this.timer.unref();
  }

  private schedule(): void {
    if (this.closed || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      void this.sync();
    }, 20);
    this.pending.unref();
  }

  /** One anti-entropy pass; resolves when the agent matches the desired set. */
  async sync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.again = false;
        try {
          await this.syncOnce();
        } catch (err) {
          this.opts.onError?.(err);
        }
      } while (this.again && !this.closed);
    })().finally(() => { this.syncing = undefined; });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    const actual = (await this.consul.agent.service.list()) as Record<string, { ID: string; Service: string; Address: string; Port: number; Tags?: string[]; Meta?: Record<string, string> }>;
    // Several publishers may share one Consul agent (an agent and a router on one VM).
    const mine = Object.values(actual).filter((s) => s.Tags?.includes(TAG) && s.Meta?.owner === this.owner);
    for (const s of mine) {
      const d = this.desired.get(s.ID);
      if (!d) await this.consul.agent.service.deregister({ id: s.ID });
    }
    for (const d of this.desired.values()) {
      const have = actual[d.serviceId];
      if (!have || have.Address !== d.address || have.Port !== d.port || have.Meta?.owner !== this.owner) {
        await this.consul.agent.service.register({
          name: d.name, id: d.serviceId, address: d.address, port: d.port, tags: [TAG], meta: { ...d.meta, owner: this.owner ?? '' },
          check: { checkid: `${d.serviceId}:ttl`, name: `${d.name} (warmpool)`, ttl: `${this.ttlSec}s`, deregistercriticalserviceafter: '10m', timeout: '1s' },
        });
      }
      const id = `${d.serviceId}:ttl`;
      const health = d.probe
        ? await d.probe().catch((err: unknown) => ({ status: 'critical' as const, note: `health probe failed: ${err instanceof Error ? err.message : String(err)}` }))
        : { status: d.passing ? 'passing' as const : 'critical' as const, note: d.note };
      if (health.status === 'passing') await this.consul.agent.check.pass({ id, note: health.note });
      else if (health.status === 'warning') await this.consul.agent.check.warn({ id, note: health.note });
      else await this.consul.agent.check.fail({ id, note: health.note });
    }
  }

  /** Stops publishing; deregisters everything this catalog registered when `deregister`. */
  async close(opts: { deregister: boolean } = { deregister: true }): Promise<void> {
    this.closed = true;
    this.detach?.();
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    await this.syncing?.catch(() => undefined);
    if (opts.deregister) {
      for (const d of this.desired.values()) await this.consul.agent.service.deregister({ id: d.serviceId }).catch(() => undefined);
    }
  }
}

function instanceEntry(i: InstanceRecord, claimed: boolean): Desired {
  const { host, port } = splitAddress(i.address);
  const passing = i.state === 'ready' && !claimed;
  return {
    serviceId: `warmpool-${i.id}`,
    name: i.service,
    address: host,
    port,
    passing,
    note: passing ? 'ready' : claimed ? 'claimed by a session' : i.state,
    meta: { kind: 'instance', instance: i.id, host: i.host },
  };
}
