/**
 * Image references and pull failures, as Docker spells them (pure functions).
 * Reference grammar: github.com/distribution/reference — the first path component is a
 * registry host when it holds a "." or a ":" or is "localhost"; otherwise Docker Hub.
 */
export interface ImageRef {
  /** Registry host[:port]; "docker.io" for Docker Hub. */
  registry: string;
  /** Repository without the registry (library/ added for Docker Hub's official images). */
  repository: string;
  /** Tag (default latest) or digest (sha256:...). */
  tag: string;
  digest: boolean;
}

export const DOCKER_HUB = 'docker.io';

export function parseImageRef(ref: string): ImageRef {
  let rest = ref.trim();
  let tag = 'latest';
  let digest = false;
  const at = rest.indexOf('@');
  if (at >= 0) {
    tag = rest.slice(at + 1);
    rest = rest.slice(0, at);
    digest = true;
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  const hasRegistry = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = hasRegistry ? first : DOCKER_HUB;
  let repository = hasRegistry ? rest.slice(slash + 1) : rest;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  return { registry, repository, tag, digest };
}

/**
 * The repository to pull (with its registry, as the engine's `fromImage` wants it). Docker
 * Hub keeps its `docker.io/` prefix: without it a Hub path whose first part looks like a
 * host (`docker.io/127.0.0.1:5000/x`) is read by the engine as that host, and the Hub login
 * chosen for the reference would go there. Throws when the string sent would name another
 * registry than `ref` (checked by parsing it again), so credentials never change registry.
 */
export function fromImage(ref: ImageRef): string {
  const out = `${ref.registry}/${ref.repository}`;
  if (parseImageRef(out).registry !== ref.registry) throw new Error(`image reference ${out} does not name registry ${ref.registry}`);
  return out;
}

export type PullFailureKind = 'auth' | 'not-found' | 'disk-full' | 'unreachable' | 'timeout' | 'not-present' | 'other';

/**
 * What kind of failure the engine's message describes. The messages are those of the
 * Docker engine and the distribution registry (e.g. "unauthorized: authentication
 * required", "manifest unknown", "dial tcp ...: connect: connection refused",
 * "no space left on device").
 */
export function classifyPullError(message: string): PullFailureKind {
  const m = message.toLowerCase();
  if (/no space left on device|disk quota exceeded/.test(m)) return 'disk-full';
  if (/unauthorized|authentication required|no basic auth credentials|denied|incorrect username or password|forbidden/.test(m)) return 'auth';
  if (/manifest unknown|not found|does not exist|name unknown/.test(m)) return 'not-found';
  if (/connection refused|no such host|dial tcp|i\/o timeout|network is unreachable|tls handshake|eof|connection reset|server misbehaving|service unavailable|bad gateway/.test(m)) return 'unreachable';
  return 'other';
}

/** Layer-by-layer progress of a pull, from the engine's JSON progress lines. */
export class PullProgressCounter {
  private layers = new Map<string, { done: number; total: number | null }>();

  /** Feeds one progress line ({status, id, progressDetail: {current, total}}); true if the bytes changed. */
  feed(e: { status?: string; id?: string; progressDetail?: { current?: number; total?: number } }): boolean {
    if (!e.id || !e.status) return false;
    const layer = this.layers.get(e.id) ?? { done: 0, total: null };
    const before = `${layer.done}/${layer.total}`;
    const status = e.status.toLowerCase();
    if (status === 'downloading') {
      if (typeof e.progressDetail?.total === 'number' && e.progressDetail.total > 0) layer.total = e.progressDetail.total;
      if (typeof e.progressDetail?.current === 'number') layer.done = e.progressDetail.current;
    } else if (status === 'download complete' || status === 'pull complete') {
      if (layer.total !== null) layer.done = layer.total;
    } else if (status !== 'pulling fs layer' && status !== 'waiting' && status !== 'verifying checksum' && status !== 'extracting') {
      return false; // "Already exists", digests, tags: no bytes of ours
    }
    this.layers.set(e.id, layer);
    return before !== `${layer.done}/${layer.total}`;
  }

  bytes(): { done: number; total: number | null } {
    let done = 0;
    let total = 0;
    let known = false;
    for (const l of this.layers.values()) {
      done += l.done;
      if (l.total !== null) { total += l.total; known = true; }
    }
    return { done, total: known ? total : null };
  }
}
