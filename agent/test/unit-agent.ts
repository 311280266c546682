// A real agent (startAgent) on a MemoryKvStore and a FakeRuntime, for tests that need the
// agent's whole loop without Docker or etcd; and the store wrappers those tests use to make
// the registry late or unavailable as the agent sees it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryKvStore, Registry, instanceKey, type KvStore, type KvWatchHandlers, type RegistryCache } from '@warmpool/registry';
import { reportToken } from '@warmpool/sidecar/protocol';
import { startAgent } from '../src/agent.js';
import type { AgentHandle, AgentOptions } from '../src/agent-options.js';
import { FakeRuntime } from './fake-runtime.js';
import { postReport } from './report-client.js';

/** Polls `fn` every 10 ms; throws `timed out: what` after `ms`. */
export async function until(fn: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The store with some members overridden (everything else bound to the store itself, so its state
 * stays its own). A missing override passes through.
 */
export function storeWith(store: KvStore, overrides: Partial<Record<keyof KvStore, unknown>>): KvStore {
  return new Proxy(store, {
    get: (target, prop) => {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof KvStore];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The store as an agent sees it when events under some prefixes arrive `delayMs` late
 * (`late(prefix)`). Range watches are turned off, so that the cache watches each prefix on
 * its own and only the late ones are delayed.
 */
export function lateEvents(store: KvStore, delayMs: number, late: (prefix: string) => boolean): KvStore {
  return storeWith(store, {
    watchRange: undefined,
    watch: (prefix: string, after: string, handlers: KvWatchHandlers) => store.watch(prefix, after, !late(prefix) ? handlers : {
      ...handlers,
      onEvents: (events, revision) => { setTimeout(() => handlers.onEvents(events, revision), delayMs); },
    }),
  });
}

export interface UnitAgent {
  store: MemoryKvStore;
  registry: Registry;
  /** The test's own view of the registry (not delayed). */
  cache: RegistryCache;
  runtime: FakeRuntime;
  agent: AgentHandle;
  /** Reports the instance ready over the agent's socket, as its sidecar would. */
  markReady(id: string): Promise<number>;
}

/**
 * Starts an agent (host h1, room for 10) whose store is `view(store)`; closed with
 * everything else in the test's teardown.
 */
export async function startUnitAgent(t: { teardown(fn: () => unknown): void }, o: {
  prefix: string; view?: (store: KvStore) => KvStore; timing?: AgentOptions['timing'];
}): Promise<UnitAgent> {
  const store = new MemoryKvStore();
  const registry = new Registry(store, { prefix: o.prefix });
  const cache = await registry.cache();
  const runtime = new FakeRuntime();
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-unit-agent-'));
  const agent = await startAgent({
    store: o.view ? o.view(store) : store, prefix: o.prefix, runtime, hostId: 'h1', address: '127.0.0.1',
    capacity: { instances: 10, memoryMb: 0 }, runDir: dir, leaseTtlSec: 5,
    timing: o.timing ?? { resyncMs: 60_000, strayGraceMs: 60_000, backoffBaseMs: 300, backoffMaxMs: 2000, dockerRetryMs: 20 },
  });
  t.teardown(async () => { await agent.close(); await registry.close(); await store.close(); rmSync(dir, { recursive: true, force: true }); });
  const secret = await registry.clusterSecret();
  return {
    store, registry, cache, runtime, agent,
    markReady: (id) => postReport(agent.socketPath, id, reportToken(instanceKey(secret, id), id), { instanceId: id, state: 'ready', bootMs: 5, at: Date.now() }),
  };
}
