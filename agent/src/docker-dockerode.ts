import Docker from 'dockerode';
import type { Readable } from 'node:stream';
import type {
  ContainerCreateSpec, ContainerDetails, ContainerEvent, ContainerRuntime, VolumeInfo, ContainerSummary, EventSubscription, ImageSummary,
  PullBytes, RegistryAuth,
} from './docker.js';
import { AgentError } from './errors.js';
import { fromImage, parseImageRef, PullProgressCounter } from './image-ref.js';
import { dockerCreateBody } from './docker-create-body.js';
import { isolateNetns } from './netns-isolation.js';

/** The container engine through dockerode (the only module that imports it). */
export interface DockerodeOptions {
  /** Unix socket of the engine (default /var/run/docker.sock). */
  socketPath?: string;
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

function mapError(err: unknown, what: string): Error {
  const status = statusOf(err);
  const msg = (err as { json?: { message?: string }; message?: string })?.json?.message ?? (err as Error)?.message ?? String(err);
  if (status === 404 && /no such image/i.test(msg)) return new AgentError('WARMPOOL_IMAGE_MISSING', `${what}: the image is not on this host (${msg})`, { cause: err });
  if (status === undefined) return new AgentError('WARMPOOL_DOCKER_UNAVAILABLE', `${what}: the Docker engine is unreachable: ${msg}`, { cause: err, retryable: true });
  return new AgentError('WARMPOOL_CONTAINER_FAILED', `${what}: ${msg}`, { cause: err, retryable: status >= 500 });
}

const labelFilter = (labels: Record<string, string>): string[] => Object.entries(labels).map(([k, v]) => `${k}=${v}`);

export class DockerodeRuntime implements ContainerRuntime {
  private readonly docker: Docker;

  constructor(opts: DockerodeOptions = {}) {
    this.docker = new Docker({ socketPath: opts.socketPath ?? '/var/run/docker.sock' });
  }

  async list(labels: Record<string, string>): Promise<ContainerSummary[]> {
    try {
      const rows = await this.docker.listContainers({ all: true, filters: { label: labelFilter(labels) } });
      return rows.map((r) => {
        const ports: Record<number, number> = {};
        for (const p of r.Ports ?? []) if (p.PublicPort && p.Type === 'tcp') ports[p.PrivatePort] = p.PublicPort;
        return { id: r.Id, labels: r.Labels ?? {}, running: r.State === 'running', createdAt: r.Created * 1000, ports };
      });
    } catch (err) {
      throw mapError(err, 'list containers');
    }
  }

  async create(spec: ContainerCreateSpec): Promise<string> {
    try {
      const c = await this.docker.createContainer(dockerCreateBody(spec));
      return c.id;
    } catch (err) {
      throw mapError(err, `create container ${spec.name}`);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (statusOf(err) === 304) return; // already started
      throw mapError(err, `start container ${id.slice(0, 12)}`);
    }
  }

  async inspect(id: string): Promise<ContainerDetails | undefined> {
    try {
      const d = await this.docker.getContainer(id).inspect();
      const ports: Record<number, number> = {};
      for (const [k, v] of Object.entries(d.NetworkSettings?.Ports ?? {})) {
        const [num, proto] = k.split('/');
        const hostPort = v?.[0]?.HostPort;
        if (proto === 'tcp' && hostPort) ports[Number(num)] = Number(hostPort);
      }
      const started = Date.parse(d.State.StartedAt);
      return {
        id: d.Id, running: d.State.Running, exitCode: d.State.Running ? null : d.State.ExitCode, oomKilled: d.State.OOMKilled,
        labels: d.Config.Labels ?? {}, ports,
        // Never started: the engine says 0001-01-01T00:00:00Z.
        startedAt: Number.isFinite(started) && started > 0 ? started : null,
        ...(d.State.Error ? { error: d.State.Error } : {}),
      };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw mapError(err, `inspect container ${id.slice(0, 12)}`);
    }
  }

  async isolate(id: string, allowTcpPort: number): Promise<void> {
    let pid: number;
    try {
      pid = (await this.docker.getContainer(id).inspect()).State.Pid;
    } catch (err) {
      throw mapError(err, `inspect container ${id.slice(0, 12)}`);
    }
    await isolateNetns(pid, allowTcpPort);
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const s = statusOf(err);
      if (s === 404) return;
      // 409: removal already in progress (someone else, or our own earlier call).
      if (s === 409 && /already in progress/i.test((err as Error).message)) return;
      throw mapError(err, `remove container ${id.slice(0, 12)}`);
    }
  }

  async subscribe(labels: Record<string, string>, onEvent: (e: ContainerEvent) => void, onClose: (err?: Error) => void): Promise<EventSubscription> {
    let stream: Readable;
    try {
      stream = (await this.docker.getEvents({ filters: { type: ['container'], label: labelFilter(labels) } })) as unknown as Readable;
    } catch (err) {
      throw mapError(err, 'subscribe to events');
    }
    let buf = '';
    let closed = false;
    const finish = (err?: Error): void => {
      if (closed) return;
      closed = true;
      onClose(err);
    };
    stream.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        try {
          const e = JSON.parse(line) as { Action?: string; status?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; id?: string; time?: number; timeNano?: number };
          const attrs = e.Actor?.Attributes ?? {};
          const action = (e.Action ?? e.status ?? '').split(':')[0]!;
          const ev: ContainerEvent = {
            action, id: e.Actor?.ID ?? e.id ?? '', labels: attrs,
            time: e.timeNano ? Math.floor(e.timeNano / 1e6) : (e.time ?? 0) * 1000,
            ...(attrs.signal !== undefined ? { signal: attrs.signal } : {}),
            ...(attrs.exitCode !== undefined ? { exitCode: Number(attrs.exitCode) } : {}),
          };
          onEvent(ev);
        } catch {
          // A malformed line is skipped; the periodic re-list covers anything missed.
        }
      }
    });
    stream.on('error', (err: Error) => finish(err));
    stream.on('end', () => finish());
    stream.on('close', () => finish());
    return { close: () => { closed = true; stream.destroy(); } };
  }

  async volume(name: string): Promise<VolumeInfo | undefined> {
    try {
      const v = await this.docker.getVolume(name).inspect();
      return { driver: v.Driver, options: (v.Options ?? {}) as Record<string, string> };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw mapError(err, `inspect volume ${name}`);
    }
  }

  async imagePresent(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw mapError(err, `inspect image ${ref}`);
    }
  }

  async pull(ref: string, opts: { auth?: RegistryAuth; signal?: AbortSignal; onProgress?: (p: PullBytes) => void } = {}): Promise<void> {
    const r = parseImageRef(ref);
    let stream: Readable;
    try {
      // The credentials travel only in the X-Registry-Auth header of this one request.
      stream = (await this.docker.createImage(opts.auth ?? {}, {
        fromImage: fromImage(r), tag: r.tag, ...(opts.signal ? { abortSignal: opts.signal } : {}),
      })) as unknown as Readable;
    } catch (err) {
      throw pullError(err, ref, opts.signal);
    }
    const counter = new PullProgressCounter();
    await new Promise<void>((resolve, reject) => {
      // The engine answers 200 and reports failures inside the stream ({"error": ...}).
      this.docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
        const failed = opts.signal?.aborted ? new Error('aborted') : err ?? out.find((o) => o.error);
        if (failed) reject(pullError(failed instanceof Error ? failed : new Error(failed.error), ref, opts.signal));
        else resolve();
      }, (e: { status?: string; id?: string; progressDetail?: { current?: number; total?: number } }) => {
        if (counter.feed(e)) opts.onProgress?.(counter.bytes());
      });
      opts.signal?.addEventListener('abort', () => stream.destroy(), { once: true });
    });
  }

  async listImages(): Promise<(ImageSummary & { containers: string[] })[]> {
    try {
      const [images, containers] = await Promise.all([this.docker.listImages({ all: false }), this.docker.listContainers({ all: true })]);
      return images.map((i) => ({
        id: i.Id,
        tags: (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'),
        containers: containers.filter((c) => c.ImageID === i.Id).map((c) => c.Id),
      }));
    } catch (err) {
      throw mapError(err, 'list images');
    }
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: false, noprune: false });
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw mapError(err, `remove image ${ref}`);
    }
  }
}

/** A pull failure with the registry's own words; never the request (it holds the credentials). */
function pullError(err: unknown, ref: string, signal: AbortSignal | undefined): AgentError {
  if (signal?.aborted) return new AgentError('WARMPOOL_PULL_FAILED', `pull of ${ref} stopped: ${String(signal.reason ?? 'aborted')}`);
  const status = statusOf(err);
  const msg = (err as { json?: { message?: string }; message?: string })?.json?.message ?? (err as Error)?.message ?? String(err);
  if (status === undefined && /ECONNREFUSED|ENOENT|socket hang up|EPIPE/.test(msg) && !/registry|manifest|pull/i.test(msg)) {
    return new AgentError('WARMPOOL_DOCKER_UNAVAILABLE', `pull ${ref}: the Docker engine is unreachable: ${msg}`, { retryable: true });
  }
  return new AgentError('WARMPOOL_PULL_FAILED', msg.replace(/^\(HTTP code \d+\) [a-z ]+ - /i, '').trim());
}
