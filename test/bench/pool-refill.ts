import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry, newSessionId, type ServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { DockerodeRuntime, clusterFromPrefix, startAgent, type AgentHandle, type ContainerEvent } from '@warmpool/agent';
import { eventually, removeContainersByLabel, startEtcd } from '../src/index.js';
import { emit, round, summarize } from './stats.js';
import { coldHost } from './pool-refill-cold.js';

/**
 * pool-refill: how fast the warm pool refills after a claim, with a real agent, etcd and
 * Docker. For each claim (one at a time, as soon as a ready instance exists): the time from
 * the claim transaction to the replacement's first container being created (Docker's own
 * `create` event; the sidecar, which owns the pod's network namespace, comes first), and from that creation to the replacement showing as ready in the
 * registry, minus BOOT_SECONDS (the app's own load time). Baseline in the same run: a bare
 * `docker create` of the same image through the same client (what any launcher pays).
 *
 * Then the cold-host figure (pool-refill-cold.ts): the image absent from the host's engine
 * and pulled from a registry with a login on 127.0.0.1; pull and boot ms apart, next to a
 * bare `docker pull` of the same image in the same run.
 *
 * args: [claims=50] [warm=3] [bootSeconds=1] [coldRounds=2] (0 skips the cold host)
 */
export async function run(args: string[]): Promise<void> {
  const claims = Math.max(1, Number(args[0] ?? 50));
  const warm = Math.max(1, Number(args[1] ?? 3));
  const bootSeconds = Number(args[2] ?? 1);
  const coldRounds = Math.max(0, Number(args[3] ?? 2));
  const etcd = await startEtcd();
  const prefix = `/bench-refill-${randomBytes(4).toString('hex')}/`;
  const cluster = clusterFromPrefix(prefix);
  const runtime = new DockerodeRuntime();
  const agentStore = new EtcdKvStore({ endpoints: etcd.endpoints });
  const store = new EtcdKvStore({ endpoints: etcd.endpoints });
  const registry = new Registry(store, { prefix });
  const runDir = mkdtempSync(path.join(tmpdir(), 'wp-bench-'));
  let agent: AgentHandle | undefined;
  const created = new Map<string, number>(); // instance id -> its first container created (ms)
  const createdOrder: { id: string; at: number }[] = [];
  const readySeen = new Map<string, number>(); // instance id -> ready in the registry (ms)
  const sub = await runtime.subscribe({ 'warmpool.cluster': cluster }, (e: ContainerEvent) => {
    if (e.action !== 'create') return;
    const id = e.labels['warmpool.instance'];
    if (!id || created.has(id)) return;
    // The engine's timestamp of the create, not when the event reached us.
    created.set(id, e.time);
    createdOrder.push({ id, at: e.time });
  }, () => undefined);
  try {
    const baseline = await dockerCreateBaseline(runtime, cluster, 20);
    emit({ bench: 'pool-refill', phase: 'baseline', dockerCreate: baseline });

    const spec: ServiceSpec = {
      name: 'chat', image: 'warmpool/chatbot-demo', containerPort: 8000, warm, maxPerHost: warm + 8, bootTimeoutSec: 60,
      readiness: { path: '/health', expectStatus: 200, intervalMs: 50, failureThreshold: 3 },
      session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 }, env: { BOOT_SECONDS: String(bootSeconds) }, resources: { memoryMb: 0, cpus: 0 },
    };
    const cache = await registry.cache();
    cache.on('change', (c: { kind: string; parts: string[] }) => {
      if (c.kind !== 'instances') return;
      const rec = cache.instances.get(c.parts[1]!)?.value;
      if (rec?.state === 'ready' && !readySeen.has(rec.id)) readySeen.set(rec.id, Date.now());
    });
    agent = await startAgent({
      store: agentStore, prefix, runtime, hostId: 'bench-host', address: '127.0.0.1', capacity: { instances: warm + 8, memoryMb: 0 }, runDir, leaseTtlSec: 10,
    });
    await registry.putService(spec);
    await eventually(() => cache.ready.count('chat') >= warm, { timeoutMs: 60_000, what: 'pool warm' });
    emit({ bench: 'pool-refill', phase: 'warm', warm, bootSeconds });

    const createdMs: number[] = [];
    const readyOverBootMs: number[] = [];
    const pending: { claim: number; at: number; sessionId: string; replacement?: string }[] = [];
    for (let i = 0; i < claims; i++) {
      await eventually(() => cache.ready.count('chat') >= 1, { timeoutMs: 60_000, intervalMs: 5, what: 'a ready instance' });
      const seenBefore = createdOrder.length;
      const at = Date.now();
      const r = await registry.claim({ service: 'chat', sessionId: newSessionId() });
      if (!r.ok) throw new Error(`claim ${i}: ${r.reason}`);
      const repl = await eventually(() => createdOrder.slice(seenBefore).find((c) => c.at >= at - 5) ?? false, { timeoutMs: 30_000, intervalMs: 2, what: 'replacement created' });
      const row = { claim: i, at, sessionId: r.session.id, replacement: repl.id };
      pending.push(row);
      createdMs.push(repl.at - at);
      // The claimed instance's session ends now: its containers go, as in real use.
      await registry.endSession(r.session.id, 'ended');
      emit({ bench: 'pool-refill', claim: i, instance: r.instance.id, replacement: repl.id, createdMs: repl.at - at });
    }
    for (const p of pending) {
      const readyAt = await eventually(() => readySeen.get(p.replacement!) ?? false, { timeoutMs: 60_000, what: `replacement ${p.replacement} ready` });
      readyOverBootMs.push(readyAt - created.get(p.replacement!)! - bootSeconds * 1000);
    }
    const c = summarize(createdMs);
    const rdy = summarize(readyOverBootMs);
    const cold = coldRounds > 0 ? await coldHost({ etcdEndpoints: etcd.endpoints, rounds: coldRounds, bootSeconds }) : undefined;
    emit({
      bench: 'pool-refill', claims, warm, bootSeconds,
      createdP50Ms: round(c.p50Ms, 1), createdP99Ms: round(c.p99Ms, 1), createdMeanMs: round(c.meanMs, 1),
      readyOverBootP50Ms: round(rdy.p50Ms, 1), readyOverBootP99Ms: round(rdy.p99Ms, 1),
      baselineDockerCreateP50Ms: baseline.p50Ms, ratioCreatedToDockerCreate: round(c.p50Ms / baseline.p50Ms, 2),
      targetCreatedP50Ms: 250, meetsTarget: c.p50Ms <= 250,
      ...(cold ? { coldHost: cold } : {}),
    });
  } finally {
    sub.close();
    await agent?.close({ destroyInstances: true }).catch(() => undefined);
    await removeContainersByLabel('warmpool.cluster', cluster);
    await registry.close();
    await store.close();
    await agentStore.close();
    await etcd.stop();
    rmSync(runDir, { recursive: true, force: true });
  }
}

/** A bare `docker create` (no start) of the demo image, n times, through the same client. */
async function dockerCreateBaseline(runtime: DockerodeRuntime, cluster: string, n: number): Promise<ReturnType<typeof summarize>> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const id = await runtime.create({ name: `wp-bench-${cluster}-${i}`, image: 'warmpool/chatbot-demo', env: {}, labels: { 'warmpool.cluster': `${cluster}-baseline` } });
    samples.push(performance.now() - t0);
    await runtime.remove(id);
  }
  return summarize(samples);
}
