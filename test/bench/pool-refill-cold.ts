import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Registry, type InstanceRecord, type ServiceSpec } from '@warmpool/registry';
import { EtcdKvStore } from '@warmpool/registry/etcd-kv';
import { DockerodeRuntime, startAgent } from '@warmpool/agent';
import { eventually, startImageRegistry, startPrivateDockerd } from '../src/index.js';
import { emit, round, summarize } from './stats.js';

const exec = promisify(execFile);

export interface ColdHostFigures {
  rounds: number;
  /** Agent: instance waiting for its image (stages.pullMs), p50 over rounds. */
  coldPullP50Ms: number;
  /** Agent: app start to ready, minus the app's own BOOT_SECONDS. */
  coldBootOverAppP50Ms: number;
  /** Service applied to instance ready (pull + create + boot), p50. */
  coldReadyP50Ms: number;
  coldWarmupP50Ms: number | null;
  /** Baseline in the same run: a bare `docker pull` of the same image on the same engine. */
  baselineDockerPullP50Ms: number;
  ratioPullToDockerPull: number;
}

/**
 * The cold-host figure of pool-refill: a host whose engine lacks the image (a private
 * engine with only the sidecar image), a registry with a login on 127.0.0.1 holding the
 * chatbot image, and an agent told to keep one warm instance. Each round: a bare `docker
 * pull` of the image (then removed), and the agent's cold start of one instance (then the
 * instance and the image removed), so both pulls fetch every layer.
 */
export async function coldHost(opts: { etcdEndpoints: string[]; rounds: number; bootSeconds: number }): Promise<ColdHostFigures> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-bench-cold-'));
  const reg = await startImageRegistry();
  let engine: Awaited<ReturnType<typeof startPrivateDockerd>> | undefined;
  const store = new EtcdKvStore({ endpoints: opts.etcdEndpoints });
  const prefix = `/bench-cold-${randomBytes(4).toString('hex')}/`;
  const registry = new Registry(store, { prefix });
  try {
    const [eng, image] = await Promise.all([startPrivateDockerd({ images: ['warmpool/sidecar'] }), reg.push('warmpool/chatbot-demo', 'warmpool/chatbot-demo:bench')]);
    engine = eng;
    const dockerConfig = reg.dockerConfig(dir);
    const cache = await registry.cache();
    const pulls: number[] = [];
    const boots: number[] = [];
    const readies: number[] = [];
    const warmups: number[] = [];
    const baseline: number[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const t0 = performance.now();
      await exec('docker', ['-H', `unix://${eng.socketPath}`, 'pull', '-q', image], { env: { ...process.env, DOCKER_CONFIG: dir } });
      baseline.push(performance.now() - t0);
      await eng.docker('rmi', image);

      const agentStore = new EtcdKvStore({ endpoints: opts.etcdEndpoints });
      const runDir = mkdtempSync(path.join(dir, 'run-'));
      const agent = await startAgent({
        store: agentStore, prefix, runtime: new DockerodeRuntime({ socketPath: eng.socketPath }), hostId: 'bench-cold', address: '127.0.0.1',
        capacity: { instances: 4, memoryMb: 0 }, runDir, leaseTtlSec: 10, dockerConfigPath: dockerConfig, cluster: `bench-cold-${round}`,
      });
      try {
        const spec: ServiceSpec = {
          name: 'cold', image, containerPort: 8000, warm: 1, maxPerHost: 2, bootTimeoutSec: 120, pullPolicy: 'IfNotPresent',
          readiness: { path: '/health', expectStatus: 200, intervalMs: 50, failureThreshold: 3 },
          session: { idleTimeoutSec: 600, maxLifetimeSec: 3600 }, env: { BOOT_SECONDS: String(opts.bootSeconds) }, resources: { memoryMb: 0, cpus: 0 },
        };
        const applied = Date.now();
        await registry.putService(spec);
        const rec: InstanceRecord = await eventually(() => [...cache.instances.values()].map((v) => v.value).find((i) => i.service === 'cold' && i.state === 'ready') ?? false,
          { timeoutMs: 180_000, intervalMs: 20, what: 'cold instance ready' });
        const readyMs = Date.now() - applied;
        const pullMs = rec.stages?.pullMs ?? NaN;
        const bootOverApp = (rec.bootMs ?? NaN) - opts.bootSeconds * 1000;
        pulls.push(pullMs);
        boots.push(bootOverApp);
        readies.push(readyMs);
        if (typeof rec.stages?.warmupMs === 'number') warmups.push(rec.stages.warmupMs);
        emit({ bench: 'pool-refill', phase: 'cold-host', round, pullMs, bootMs: rec.bootMs, bootOverAppMs: bootOverApp, readyMs, warmupMs: rec.stages?.warmupMs ?? null, dockerPullMs: round2(baseline.at(-1)!) });
      } finally {
        await registry.deleteService('cold');
        await agent.close({ destroyInstances: true });
        await agentStore.close();
      }
      await eng.docker('rmi', image);
    }
    const p = summarize(pulls).p50Ms;
    const b = summarize(baseline).p50Ms;
    return {
      rounds: opts.rounds, coldPullP50Ms: round(p, 1), coldBootOverAppP50Ms: round(summarize(boots).p50Ms, 1), coldReadyP50Ms: round(summarize(readies).p50Ms, 1),
      coldWarmupP50Ms: warmups.length ? round(summarize(warmups).p50Ms, 1) : null,
      baselineDockerPullP50Ms: round(b, 1), ratioPullToDockerPull: round(p / b, 2),
    };
  } finally {
    await registry.close();
    await store.close();
    await engine?.close();
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return round(x, 1);
}
