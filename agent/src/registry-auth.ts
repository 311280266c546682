import { readFile } from 'node:fs/promises';
import type { RegistryAuth } from './docker.js';
import { DOCKER_HUB, parseImageRef } from './image-ref.js';

/**
 * Registry credentials from a Docker config file (the `auths` format `docker login`
 * writes: {"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}, or username /
 * password / identitytoken fields). The path comes from the agent's own configuration,
 * never from the registry; the file is read at every pull, so a `docker login` on the host
 * takes effect without a restart. Nothing read here is ever logged or written anywhere but
 * the engine's X-Registry-Auth header. Credential helpers (credsStore, credHelpers) are not
 * run: a registry that only has a helper pulls anonymously.
 */
interface AuthEntry { auth?: string; username?: string; password?: string; identitytoken?: string }

/** "https://index.docker.io/v1/" -> "docker.io"; "http://127.0.0.1:5000/" -> "127.0.0.1:5000". */
export function registryKey(address: string): string {
  const host = address.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' || host === 'docker.io' ? DOCKER_HUB : host;
}

/** The credentials in a parsed config file for the registry of `image`; undefined: pull anonymously. */
export function authFromConfig(config: unknown, image: string): RegistryAuth | undefined {
  const auths = (config as { auths?: unknown })?.auths;
  if (!auths || typeof auths !== 'object') return undefined;
  const want = parseImageRef(image).registry;
  for (const [address, raw] of Object.entries(auths as Record<string, unknown>)) {
    if (registryKey(address) !== want || !raw || typeof raw !== 'object') continue;
    const e = raw as AuthEntry;
    const serveraddress = want === DOCKER_HUB ? 'https://index.docker.io/v1/' : want;
    if (typeof e.identitytoken === 'string' && e.identitytoken) return { serveraddress, identitytoken: e.identitytoken };
    if (typeof e.auth === 'string' && e.auth) {
      const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return { serveraddress, username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (typeof e.username === 'string' && typeof e.password === 'string') return { serveraddress, username: e.username, password: e.password };
  }
  return undefined;
}

export type AuthLookup = (image: string) => Promise<RegistryAuth | undefined>;

/**
 * Reads `path` at each call. A missing or unreadable file means anonymous pulls; the
 * error names the file but never its content.
 */
export function dockerConfigAuth(path: string | undefined, onError: (message: string) => void): AuthLookup {
  return async (image) => {
    if (!path) return undefined;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      onError(`cannot read the Docker config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}; pulling anonymously`);
      return undefined;
    }
    try {
      return authFromConfig(JSON.parse(text), image);
    } catch {
      onError(`the Docker config file ${path} is not valid JSON; pulling anonymously`);
      return undefined;
    }
  };
}
