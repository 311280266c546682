import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import { WAIT_BUCKETS_SEC, type UsageTotals } from '@warmpool/registry';

/**
 * The router's Prometheus metrics, in a registry of its own (several routers can live in
 * one process, as in tests). Gauges that mirror the registry cache are computed at scrape
 * time through the `collect` callbacks, so the hot path only touches counters.
 */
export interface RouterMetrics {
  registry: PromRegistry;
  claimDuration: Histogram<'service' | 'outcome'>;
  waiting: Gauge<'service'>;
  waitedForBoot: Counter<'service'>;
  /** New sessions by whether they waited for an instance (hit ratio = waited="false" / all). */
  sessionsCreated: Counter<'service' | 'waited'>;
  /** Wait of the sessions that waited, seconds. */
  sessionWait: Histogram<'service'>;
  proxyErrors: Counter<'code'>;
  activeSessions: Gauge<'service'>;
  stageDuration: Histogram<'service' | 'stage'>;
  render(): Promise<string>;
  contentType: string;
}

export interface MetricsSources {
  /** Waiting requests per service, now. */
  waiting(): Map<string, number>;
  /** Active sessions per service, now. */
  activeSessions(): Map<string, number>;
  /** 1 while the registry is listed and its watch linked; 0 before the first list and while the link is down. */
  registryConnected(): number;
  /** Pool size and fleet-wide waiting sessions per service, from the registry. */
  pools?(): Map<string, { target: number; waiting: number }>;
  /** Instance- and GPU-seconds per service since this router started watching. */
  usage?(): Map<string, UsageTotals>;
  /** Messages and bytes this router's registry watches received (etcd only). */
  watchTraffic?(): { messages: number; bytes: number } | undefined;
}

export function createMetrics(sources: MetricsSources, opts: { defaultMetrics?: boolean } = {}): RouterMetrics {
  const registry = new PromRegistry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'warmpool_router_' });
  const claimDuration = new Histogram({
    name: 'warmpool_router_claim_duration_seconds',
    help: 'Time to answer a new-session request, including any wait for a booting instance',
    labelNames: ['service', 'outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const waiting = new Gauge({
    name: 'warmpool_router_waiting_requests',
    help: 'New-session requests waiting for an instance to become ready',
    labelNames: ['service'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [service, n] of sources.waiting()) this.set({ service }, n);
    },
  });
  const waitedForBoot = new Counter({
    name: 'warmpool_router_sessions_waited_for_boot_total',
    help: 'Sessions that found no ready instance and got one after waiting for a boot',
    labelNames: ['service'] as const,
    registers: [registry],
  });
  const proxyErrors = new Counter({
    name: 'warmpool_router_proxy_errors_total',
    help: 'Proxied requests that failed between the router and the instance',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const activeSessions = new Gauge({
    name: 'warmpool_router_active_sessions',
    help: 'Active sessions per service, as this router\'s registry cache sees them',
    labelNames: ['service'] as const,
    // Every worker of a multi-process router sees the same sessions: not a sum.
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.reset();
      for (const [service, n] of sources.activeSessions()) this.set({ service }, n);
    },
  });
  const stageDuration = new Histogram({
    name: 'warmpool_instance_stage_duration_seconds',
    help: 'How long each stage of an instance\'s start took (pull, create, boot, warmup), from the instance records in the registry',
    labelNames: ['service', 'stage'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600],
    // Every worker of a multi-process router watches the same instances: not a sum.
    aggregator: 'max',
    registers: [registry],
  });
  new Gauge({
    name: 'warmpool_router_registry_connected',
    help: '1 while this router\'s registry watch is connected; 0 while it serves established sessions from its copy and new sessions get 503',
    // A multi-process router is connected only when every worker is.
    aggregator: 'min',
    registers: [registry],
    collect() { this.set(sources.registryConnected()); },
  });
  const sessionsCreated = new Counter({
    name: 'warmpool_router_sessions_created_total',
    help: 'New sessions created by this router, by whether the request waited for an instance (waited="false" / all = hit ratio)',
    labelNames: ['service', 'waited'] as const,
    registers: [registry],
  });
  const sessionWait = new Histogram({
    name: 'warmpool_router_session_wait_seconds',
    help: 'Time the sessions that found no ready instance waited for one',
    labelNames: ['service'] as const,
    buckets: WAIT_BUCKETS_SEC,
    registers: [registry],
  });
  poolMetrics(registry, sources);
  watchMetrics(registry, sources);
  return {
    registry, claimDuration, waiting, waitedForBoot, sessionsCreated, sessionWait, proxyErrors, activeSessions, stageDuration,
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/** What following the registry costs this router: watch messages and their protobuf bytes. */
function watchMetrics(registry: PromRegistry, sources: MetricsSources): void {
  new Counter({
    name: 'warmpool_router_registry_watch_messages_total',
    help: 'Watch messages this router received from the registry (etcd) since it started',
    registers: [registry],
    collect() { this.reset(); this.inc(sources.watchTraffic?.()?.messages ?? 0); },
  });
  new Counter({
    name: 'warmpool_router_registry_watch_bytes_total',
    help: 'Bytes (protobuf) of the watch messages this router received from the registry (etcd) since it started',
    registers: [registry],
    collect() { this.reset(); this.inc(sources.watchTraffic?.()?.bytes ?? 0); },
  });
}

/** Pool figures every router computes from the registry alike: workers report the same (max). */
function poolMetrics(registry: PromRegistry, sources: MetricsSources): void {
  new Gauge({
    name: 'warmpool_pool_target_instances',
    help: 'Ready-or-booting instances the pool keeps (static warm or the demand-driven size), per service',
    labelNames: ['service'] as const, aggregator: 'max', registers: [registry],
    collect() { this.reset(); for (const [service, p] of sources.pools?.() ?? []) this.set({ service }, p.target); },
  });
  new Gauge({
    name: 'warmpool_pool_waiting_sessions',
    help: 'Sessions waiting for an instance in every router\'s queue, per service (each adds a boot)',
    labelNames: ['service'] as const, aggregator: 'max', registers: [registry],
    collect() { this.reset(); for (const [service, p] of sources.pools?.() ?? []) this.set({ service }, p.waiting); },
  });
  new Counter({
    name: 'warmpool_pool_instance_seconds_total',
    help: 'Instance-seconds per service and state (idle: ready and unclaimed; busy: claimed; booting) since this router started watching',
    labelNames: ['service', 'state'] as const, aggregator: 'max', registers: [registry],
    collect() {
      this.reset();
      for (const [service, u] of sources.usage?.() ?? []) {
        this.inc({ service, state: 'idle' }, u.idleSec);
        this.inc({ service, state: 'busy' }, u.busySec);
        this.inc({ service, state: 'booting' }, u.bootingSec);
      }
    },
  });
  new Counter({
    name: 'warmpool_pool_gpu_seconds_total',
    help: 'GPU-seconds per service and state (idle, busy) since this router started watching (resources.gpus per instance)',
    labelNames: ['service', 'state'] as const, aggregator: 'max', registers: [registry],
    collect() {
      this.reset();
      for (const [service, u] of sources.usage?.() ?? []) {
        this.inc({ service, state: 'idle' }, u.idleGpuSec);
        this.inc({ service, state: 'busy' }, u.busyGpuSec);
      }
    },
  });
}
