import type { ContainerCreateSpec } from './docker.js';

/**
 * The body of the Docker Engine API's `POST /containers/create` for a ContainerCreateSpec,
 * field by field what `docker run` sends for the same flags (API 1.41 reference,
 * ContainerConfig / HostConfig). Pure, so the request is tested without an engine.
 */
export interface DockerCreateBody {
  name: string;
  Image: string;
  Env: string[];
  Labels: Record<string, string>;
  Cmd?: string[];
  Entrypoint?: string[];
  User?: string;
  ExposedPorts?: Record<string, object>;
  HostConfig: {
    Memory?: number;
    NanoCpus?: number;
    PortBindings?: Record<string, { HostIp: string; HostPort: string }[]>;
    NetworkMode?: string;
    Binds?: string[];
    ShmSize?: number;
    IpcMode?: string;
    Ulimits?: { Name: string; Soft: number; Hard: number }[];
    /** `--gpus '"device=1,2"'` sends exactly this one request. */
    DeviceRequests?: { Driver: string; Count: number; DeviceIDs: string[]; Capabilities: string[][]; Options: Record<string, string> }[];
    CapAdd?: string[];
    RestartPolicy: { Name: string };
  };
}

export function dockerCreateBody(spec: ContainerCreateSpec): DockerCreateBody {
  const port = spec.publish ? `${spec.publish.containerPort}/tcp` : undefined;
  const binds = [
    ...Object.entries(spec.binds ?? {}).map(([h, c]) => `${h}:${c}`),
    ...(spec.volumes ?? []).map((v) => `${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`),
  ];
  return {
    name: spec.name,
    Image: spec.image,
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    Labels: spec.labels,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    ...(spec.user ? { User: spec.user } : {}),
    ...(port ? { ExposedPorts: { [port]: {} } } : {}),
    HostConfig: {
      ...(spec.memoryBytes ? { Memory: spec.memoryBytes } : {}),
      ...(spec.nanoCpus ? { NanoCpus: spec.nanoCpus } : {}),
      ...(port ? { PortBindings: { [port]: [{ HostIp: spec.publish!.hostIp, HostPort: '0' }] } } : {}),
      ...(spec.networkOfContainer ? { NetworkMode: `container:${spec.networkOfContainer}` } : spec.network ? { NetworkMode: spec.network } : {}),
      ...(binds.length ? { Binds: binds } : {}),
      ...(spec.shmSizeBytes ? { ShmSize: spec.shmSizeBytes } : {}),
      ...(spec.ipcMode ? { IpcMode: spec.ipcMode } : {}),
      ...(spec.ulimits?.length ? { Ulimits: spec.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })) } : {}),
      ...(spec.gpuDeviceIds?.length
        ? { DeviceRequests: [{ Driver: '', Count: 0, DeviceIDs: [...spec.gpuDeviceIds], Capabilities: [['gpu']], Options: {} }] }
        : {}),
      ...(spec.capAdd?.length ? { CapAdd: spec.capAdd } : {}),
      // The agent replaces instances itself; the engine must not restart them behind its back.
      RestartPolicy: { Name: 'no' },
    },
  };
}
