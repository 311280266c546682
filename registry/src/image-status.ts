import type { HostImageState, HostRecord, InstanceRecord, PullProgress, ServiceSpec } from './types.js';

/** A service's image across the fleet, and its instances waiting for it (docs/images.md). */
export interface ServiceImageStatus {
  image: string;
  /** Instances in state pulling. */
  pulling: number;
  pulls: ({ instance: string; host: string } & PullProgress)[];
  /** Per host (every host in the registry): how the image stands there; `absent` when the host has not reported it. */
  imageHosts: { host: string; state: HostImageState['state'] | 'absent'; percent: number | null; reason: string | null }[];
  /** Hosts that have the image. */
  imagePresentOn: number;
}

/** Pure: computed from records in the cache (warmpool status, the dashboard). */
export function serviceImageStatus(spec: ServiceSpec, insts: readonly InstanceRecord[], hosts: readonly HostRecord[]): ServiceImageStatus {
  const pulling = insts.filter((i) => i.state === 'pulling');
  const imageHosts = hosts.map((h) => {
    const s = h.images?.[spec.image];
    return { host: h.id, state: s?.state ?? ('absent' as const), percent: s?.percent ?? null, reason: s?.reason ?? null };
  });
  return {
    image: spec.image,
    pulling: pulling.length,
    pulls: pulling.map((i) => ({
      instance: i.id, host: i.host, image: i.pull?.image ?? spec.image,
      bytesDone: i.pull?.bytesDone ?? 0, bytesTotal: i.pull?.bytesTotal ?? null, percent: i.pull?.percent ?? null,
    })),
    imageHosts,
    imagePresentOn: imageHosts.filter((h) => h.state === 'present').length,
  };
}
