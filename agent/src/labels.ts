/**
 * Labels on every container an agent launches. `docker ps --filter label=warmpool.cluster=X`
 * lists a cluster's containers; an agent only ever touches containers of its own cluster and
 * host, and never one without these labels.
 */
export const LABEL = {
  cluster: 'warmpool.cluster',
  service: 'warmpool.service',
  instance: 'warmpool.instance',
  host: 'warmpool.host',
  /** app | sidecar */
  role: 'warmpool.role',
  /** Warm slot the instance was started into (adoption after an agent restart). */
  slot: 'warmpool.slot',
  /** Hash of the container-relevant part of the ServiceSpec it was started from. */
  spec: 'warmpool.spec',
  /** GPU ids given to the instance (comma-separated): the allocation is rebuilt from it after a restart. */
  gpus: 'warmpool.gpus',
} as const;

/** The GPU ids a container's label names ('' or absent: none). */
export function gpusFromLabels(labels: Record<string, string>): string[] {
  return (labels[LABEL.gpus] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

export type ContainerRole = 'app' | 'sidecar';

/**
 * The cluster name, derived from the registry prefix unless configured: two deployments (or
 * two test runs) with different prefixes on one Docker engine never see each other's
 * containers. '/warmpool/' -> 'warmpool', '/warmpool-test/t1a2b/' -> 'warmpool-test.t1a2b'.
 */
export function clusterFromPrefix(prefix: string): string {
  const parts = prefix.split('/').filter(Boolean).map((p) => p.replace(/[^A-Za-z0-9_.-]/g, '_'));
  return parts.length ? parts.join('.') : 'warmpool';
}

/** Docker container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
export function containerName(cluster: string, instanceId: string, role: ContainerRole): string {
  const raw = `wp.${cluster}.${instanceId}.${role}`.replace(/[^A-Za-z0-9_.-]/g, '_');
  return raw.length > 200 ? raw.slice(raw.length - 200).replace(/^[^A-Za-z0-9]+/, '') : raw;
}
