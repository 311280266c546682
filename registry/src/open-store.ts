import type { KvStore } from './kv.js';
import { RegistryError } from './errors.js';

/** How to reach the registry; what `--etcd`, `--consul` and WARMPOOL_* settings become. */
export type StoreConfig =
  | {
      backend: 'etcd';
      endpoints: string[];
      tls?: { ca?: string; cert?: string; key?: string };
      auth?: { username: string; password: string };
    }
  | { backend: 'consul'; host: string; port: number; token?: string }
  | { backend: 'memory' };

/** Opens the configured backend; only the chosen backend's client library is loaded. */
export async function openStore(cfg: StoreConfig): Promise<KvStore> {
  switch (cfg.backend) {
    case 'etcd': {
      const { EtcdKvStore } = await import('./etcd-kv.js');
      return new EtcdKvStore({ endpoints: cfg.endpoints, ...(cfg.tls ? { tls: cfg.tls } : {}), ...(cfg.auth ? { auth: cfg.auth } : {}) });
    }
    case 'consul': {
      const { ConsulKvStore } = await import('./consul-kv.js');
      return new ConsulKvStore({ url: `http://${cfg.host}:${cfg.port}`, ...(cfg.token ? { token: cfg.token } : {}) });
    }
    case 'memory': {
      const { MemoryKvStore } = await import('./memory-kv.js');
      return new MemoryKvStore();
    }
    default:
      throw new RegistryError('WARMPOOL_INVALID_CONFIG', `unknown registry backend ${JSON.stringify((cfg as { backend: unknown }).backend)}`);
  }
}

/**
 * Reads the store config from flags/environment. etcd endpoints are comma separated URLs;
 * Consul is host:port. Errors name the setting that is wrong.
 */
export function storeConfigFrom(src: {
  etcd?: string | undefined; consul?: string | undefined; etcdCa?: string | undefined; etcdCert?: string | undefined; etcdKey?: string | undefined;
  etcdUser?: string | undefined; etcdPassword?: string | undefined; consulToken?: string | undefined;
}): StoreConfig {
  if (src.consul) {
    const m = /^([^:]+):(\d{1,5})$/.exec(src.consul);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new RegistryError('WARMPOOL_INVALID_CONFIG', `--consul must be HOST:PORT, got ${JSON.stringify(src.consul)}`);
    return { backend: 'consul', host: m[1]!, port: Number(m[2]), ...(src.consulToken ? { token: src.consulToken } : {}) };
  }
  const raw = src.etcd ?? 'http://127.0.0.1:2379';
  const endpoints = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of endpoints) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new RegistryError('WARMPOOL_INVALID_CONFIG', `--etcd: ${JSON.stringify(e)} is not a URL (expected http://HOST:PORT or https://HOST:PORT)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RegistryError('WARMPOOL_INVALID_CONFIG', `--etcd: ${JSON.stringify(e)} must use http or https`);
  }
  if (endpoints.length === 0) throw new RegistryError('WARMPOOL_INVALID_CONFIG', '--etcd: at least one endpoint is required');
  if ((src.etcdCert && !src.etcdKey) || (!src.etcdCert && src.etcdKey)) {
    throw new RegistryError('WARMPOOL_INVALID_CONFIG', '--etcd-cert and --etcd-key go together');
  }
  if (src.etcdUser && src.etcdPassword === undefined) throw new RegistryError('WARMPOOL_INVALID_CONFIG', '--etcd-user needs a password (WARMPOOL_ETCD_PASSWORD)');
  const tls = src.etcdCa || src.etcdCert ? { ...(src.etcdCa ? { ca: src.etcdCa } : {}), ...(src.etcdCert ? { cert: src.etcdCert, key: src.etcdKey! } : {}) } : undefined;
  return {
    backend: 'etcd',
    endpoints,
    ...(tls ? { tls } : {}),
    ...(src.etcdUser ? { auth: { username: src.etcdUser, password: src.etcdPassword ?? '' } } : {}),
  };
}
