import { measuredStages, type CacheChange, type InstanceRecord, type RegistryCache } from '@warmpool/registry';
import type { RouterMetrics } from './metrics.js';

/** Histogram label of each recorded stage. */
const LABEL = { pullMs: 'pull', createMs: 'create', bootMs: 'boot', warmupMs: 'warmup' } as const;

/**
 * Feeds warmpool_instance_stage_duration_seconds from the registry watch: every instance
 * seen ready (or later) with timed stages is observed once per stage, whichever agent
 * booted it. Instances already ready when the router starts are observed at attach.
 */
export class StageMetrics {
  private readonly seen = new Set<string>();
  private cache: RegistryCache | undefined;

  constructor(private readonly metrics: RouterMetrics) {}

  attach(cache: RegistryCache): void {
    if (this.cache === cache) return;
    this.cache?.off('change', this.onChange);
    this.cache = cache;
    cache.on('change', this.onChange);
    for (const { value } of cache.instances.values()) this.observe(value);
  }

  detach(): void {
    this.cache?.off('change', this.onChange);
    this.cache = undefined;
  }

  private onChange = (c: CacheChange): void => {
    if (c.kind !== 'instances') return;
    const id = c.parts[1] ?? '';
    if (c.type === 'delete') { this.seen.delete(id); return; }
    const rec = this.cache?.instances.get(id)?.value;
    if (rec) this.observe(rec);
  };

  private observe(i: InstanceRecord): void {
    if (this.seen.has(i.id) || (i.state !== 'ready' && i.state !== 'claimed') || !i.stages) return;
    this.seen.add(i.id);
    for (const [name, ms] of measuredStages(i.stages)) this.metrics.stageDuration.observe({ service: i.service, stage: LABEL[name] }, ms / 1000);
  }
}
