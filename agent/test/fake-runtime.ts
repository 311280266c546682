import type { VolumeInfo, ImageSummary, PullBytes, RegistryAuth, ContainerCreateSpec, ContainerDetails, ContainerEvent, ContainerRuntime, ContainerSummary, EventSubscription } from '../src/docker.js';

interface FakeContainer { id: string; spec: ContainerCreateSpec; running: boolean; createdAt: number; port: number; exitCode?: number; oomKilled?: boolean }

/** An in-memory container engine: enough of Docker for the agent's logic. */
export class FakeRuntime implements ContainerRuntime {
  containers = new Map<string, FakeContainer>();
  subscribers = new Set<{ labels: Record<string, string>; onEvent: (e: ContainerEvent) => void; onClose: (err?: Error) => void }>();
  calls = { list: 0, create: 0, remove: 0, subscribe: 0, pull: 0 };
  /** Images the engine holds; the default set holds what every test so far used. */
  images = new Set<string>(['warmpool/chatbot-demo', 'warmpool/sidecar', 'img']);
  /** Pulls as the tests script them: an error (the registry's words) or a gate to hold the pull open. */
  pullScript = new Map<string, { error?: string; gate?: Promise<void>; bytes?: number }>();
  /** The auth each pull carried, by image. */
  pullAuth = new Map<string, RegistryAuth | undefined>();
  removedImages: string[] = [];
  /** When each pull started (epoch ms). */
  pullTimes: number[] = [];
  down = false;
  /** A slow engine: create / start take this long (ms). */
  delays = { create: 0, start: 0 };
  /** The next creates fail with this (e.g. a full disk). */
  createError: Error | undefined;
  private next = 1;
  private nextPort = 40000;

  private check(): void {
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED /var/run/docker.sock'), { code: 'ECONNREFUSED' });
  }

  private matches(labels: Record<string, string>, want: Record<string, string>): boolean {
    return Object.entries(want).every(([k, v]) => labels[k] === v);
  }

  async list(labels: Record<string, string>): Promise<ContainerSummary[]> {
    this.check();
    this.calls.list++;
    return [...this.containers.values()].filter((c) => this.matches(c.spec.labels, labels)).map((c) => ({
      id: c.id, labels: c.spec.labels, running: c.running, createdAt: c.createdAt,
      ports: c.spec.publish ? { [c.spec.publish.containerPort]: c.port } : {},
    }));
  }

  async create(spec: ContainerCreateSpec): Promise<string> {
    this.check();
    this.calls.create++;
    if (this.delays.create) await new Promise((r) => setTimeout(r, this.delays.create));
    if (this.createError) throw this.createError;
    const id = `c${String(this.next++).padStart(12, '0')}`;
    this.containers.set(id, { id, spec, running: false, createdAt: Date.now(), port: this.nextPort++ });
    return id;
  }

  async start(id: string): Promise<void> {
    this.check();
    if (this.delays.start) await new Promise((r) => setTimeout(r, this.delays.start));
    const c = this.containers.get(id);
    if (!c) throw Object.assign(new Error('no such container'), { statusCode: 404 });
    // Like the engine: a container joining another's namespace needs it running; and the
    // agent must have filtered that namespace first (the app never runs unfiltered).
    const owner = c.spec.networkOfContainer;
    if (owner && !this.containers.get(owner)?.running) throw Object.assign(new Error(`container ${owner} is not running`), { statusCode: 409 });
    if (owner && !this.isolated.has(owner)) throw new Error(`fake engine: ${id} started in ${owner}'s namespace before it was isolated`);
    c.running = true;
  }

  async inspect(id: string): Promise<ContainerDetails | undefined> {
    this.check();
    const c = this.containers.get(id);
    if (!c) return undefined;
    return { id, running: c.running, exitCode: c.running ? null : c.exitCode ?? 137, oomKilled: c.oomKilled ?? false, labels: c.spec.labels, ports: c.spec.publish ? { [c.spec.publish.containerPort]: c.port } : {} };
  }

  /** Records the filter (the real one is tested against a real engine in test/e2e/pod-isolation.test.ts). */
  isolated = new Map<string, number>();
  async isolate(id: string, allowTcpPort: number): Promise<void> {
    this.check();
    const c = this.containers.get(id);
    if (!c?.running) throw Object.assign(new Error(`container ${id} is not running`), { statusCode: 409 });
    this.isolated.set(id, allowTcpPort);
  }

  async remove(id: string): Promise<void> {
    this.check();
    this.calls.remove++;
    const c = this.containers.get(id);
    if (!c) return;
    this.containers.delete(id);
    if (c.running) this.emit({ action: 'die', id, labels: c.spec.labels, exitCode: 137, time: Date.now() });
    this.emit({ action: 'destroy', id, labels: c.spec.labels, time: Date.now() });
  }

  async subscribe(labels: Record<string, string>, onEvent: (e: ContainerEvent) => void, onClose: (err?: Error) => void): Promise<EventSubscription> {
    this.check();
    this.calls.subscribe++;
    const sub = { labels, onEvent, onClose };
    this.subscribers.add(sub);
    return { close: () => { this.subscribers.delete(sub); } };
  }

  emit(e: ContainerEvent): void {
    for (const s of this.subscribers) if (this.matches(e.labels, s.labels)) s.onEvent(e);
  }

  /** The container exits on its own (crash); with events=false nobody hears of it. */
  crash(id: string, events = true): void {
    const c = this.containers.get(id)!;
    c.running = false;
    if (events) this.emit({ action: 'die', id, labels: c.spec.labels, exitCode: 1, time: Date.now() });
  }

  /** The container stops with this exit (an OOM kill: code 137, oom true); with events=false nobody hears of it yet. */
  exit(id: string, exit: { code: number; oom?: boolean }, events = true): void {
    const c = this.containers.get(id)!;
    c.running = false;
    c.exitCode = exit.code;
    c.oomKilled = exit.oom ?? false;
    if (events) this.emit({ action: 'die', id, labels: c.spec.labels, exitCode: exit.code, time: Date.now() });
  }

  /** The engine learns late that the stopped container was OOM-killed: flags it, and with event=true sends the oom event (nothing once it is removed). */
  flagOom(id: string, event = true): void {
    const c = this.containers.get(id);
    if (!c) return; // removed meanwhile
    c.oomKilled = true;
    if (event) this.emit({ action: 'oom', id, labels: c.spec.labels, time: Date.now() });
  }

  /** The engine goes away: every event stream ends; calls fail until `restart()`. */
  stop(): void {
    this.down = true;
    for (const s of [...this.subscribers]) { this.subscribers.delete(s); s.onClose(new Error('socket hang up')); }
  }

  restart(): void {
    this.down = false;
  }

  byRole(role: 'app' | 'sidecar'): FakeContainer[] {
    return [...this.containers.values()].filter((c) => c.spec.labels['warmpool.role'] === role);
  }

  async imagePresent(ref: string): Promise<boolean> {
    this.check();
    return this.images.has(ref);
  }

  async pull(ref: string, opts: { auth?: RegistryAuth; signal?: AbortSignal; onProgress?: (p: PullBytes) => void } = {}): Promise<void> {
    this.check();
    this.calls.pull++;
    this.pullTimes.push(Date.now());
    this.pullAuth.set(ref, opts.auth);
    const script = this.pullScript.get(ref) ?? {};
    const total = script.bytes ?? 1000;
    opts.onProgress?.({ done: 0, total });
    opts.onProgress?.({ done: Math.floor(total / 2), total });
    if (script.gate) {
      await Promise.race([script.gate, new Promise<void>((_, reject) => opts.signal?.addEventListener('abort', () => reject(new Error(`pull of ${ref} stopped: ${String(opts.signal?.reason)}`)), { once: true }))]);
    }
    if (script.error) throw Object.assign(new Error(script.error), { code: 'WARMPOOL_PULL_FAILED' });
    opts.onProgress?.({ done: total, total });
    this.images.add(ref);
  }

  async listImages(): Promise<(ImageSummary & { containers: string[] })[]> {
    this.check();
    return [...this.images].map((ref) => ({
      id: `sha256:${ref}`, tags: [ref], containers: [...this.containers.values()].filter((c) => c.spec.image === ref).map((c) => c.id),
    }));
  }

  /** Named volumes the engine holds (none unless a test adds one). */
  volumes = new Map<string, VolumeInfo>();

  async volume(name: string): Promise<VolumeInfo | undefined> {
    this.check();
    return this.volumes.get(name);
  }

  async removeImage(ref: string): Promise<void> {
    this.check();
    if ([...this.containers.values()].some((c) => c.spec.image === ref)) throw new Error(`conflict: image ${ref} is used by a container`);
    this.images.delete(ref);
    this.removedImages.push(ref);
  }
}
