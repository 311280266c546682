import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openStore, storeConfigFrom, WarmpoolError } from '@warmpool/registry';
import { ConsulCatalog } from '@warmpool/registry/consul-catalog';
import { startAgent, type AgentHandle } from './agent.js';
import { readConfigFile, resolveAgentConfig, SETTINGS, type AgentConfig } from './config.js';
import { DockerodeRuntime } from './docker-dockerode.js';
import { AgentError } from './errors.js';
import { resolveGpuInventory } from './gpu-inventory.js';
import { createLogger } from './logger.js';

export interface RunningAgent {
  agent: AgentHandle;
  /** Stops the agent (containers keep running for adoption) and closes the registry store. */
  stop(opts?: { destroyInstances?: boolean }): Promise<void>;
}

/** Opens the registry and Docker as configured and starts the agent. */
export async function runAgent(cfg: AgentConfig): Promise<RunningAgent> {
  const log = createLogger(cfg.logLevel, { host: cfg.hostId });
  const gpus = await resolveGpuInventory(cfg.gpus);
  if (gpus.error) log.warn({ error: gpus.error }, 'GPU detection failed: no GPUs published (configure gpus.devices to set them)');
  log.info({ source: gpus.source, gpus: gpus.devices.map((d) => d.id) }, 'GPU inventory');
  const store = await openStore(storeConfigFrom({ ...cfg.registry, etcdPassword: process.env.WARMPOOL_ETCD_PASSWORD }));
  mkdirSync(cfg.runDir, { recursive: true });
  let agent: AgentHandle;
  try {
    agent = await startAgent({
      store, prefix: cfg.registry.prefix, runtime: new DockerodeRuntime({ socketPath: cfg.docker.socketPath }),
      hostId: cfg.hostId, address: cfg.address, ...(cfg.publishIp ? { publishIp: cfg.publishIp } : {}),
      capacity: cfg.capacity, labels: cfg.labels, allow: cfg.allow, gpus: gpus.devices, runDir: cfg.runDir, leaseTtlSec: cfg.leaseTtlSec,
      ...(cfg.cluster ? { cluster: cfg.cluster } : {}), sidecarImage: cfg.sidecar.image, sidecarPort: cfg.sidecar.port,
      ...(cfg.docker.network ? { network: cfg.docker.network } : {}),
      ...(cfg.images.dockerConfig ? { dockerConfigPath: cfg.images.dockerConfig } : {}),
      timing: {
        resyncMs: cfg.timing.resyncSec * 1000, strayGraceMs: cfg.timing.strayGraceSec * 1000, spreadStepMs: cfg.timing.spreadStepMs,
        maxSpreadMs: cfg.timing.maxSpreadMs, backoffBaseMs: cfg.timing.backoffBaseMs, backoffMaxMs: cfg.timing.backoffMaxMs,
        createTimeoutMs: cfg.timing.createTimeoutSec * 1000,
        imageGcAfterMs: cfg.images.gcAfterSec * 1000,
      },
      logger: log,
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  // With a local Consul agent, this host's instances are published there (DNS).
  let catalog: ConsulCatalog | undefined;
  if (cfg.consulAgent) {
    const i = cfg.consulAgent.lastIndexOf(':');
    catalog = new ConsulCatalog({
      host: cfg.consulAgent.slice(0, i), port: Number(cfg.consulAgent.slice(i + 1)),
      onError: (err) => log.warn({ error: (err as Error)?.message ?? String(err) }, 'consul catalog sync failed'),
    });
    catalog.followHost(await agent.registry.cache(), cfg.hostId);
  }
  return {
    agent,
    async stop(opts) {
      await catalog?.close({ deregister: Boolean(opts?.destroyInstances) });
      await agent.close(opts);
      await store.close().catch(() => undefined);
      log.flush();
    },
  };
}

export const AGENT_USAGE = `usage: warmpool agent [--config FILE] [--etcd URLS] [--prefix P] [--host-id ID] [--address IP]
       [--instances N] [--memory-mb N] [--label K=V]... [--run-dir DIR] [--lease-ttl SEC] ...
Every setting: agent/README.md (flags override WARMPOOL_* variables, which override the file).`;

/** Parses `warmpool agent` arguments (argv without the program and subcommand). */
export function agentConfigFromArgs(argv: string[], env: Record<string, string | undefined> = process.env): AgentConfig | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' }, help: { type: 'boolean' } };
  for (const s of SETTINGS) options[s.flag] = { type: 'string', ...(s.type === 'labels' || s.type === 'list' ? { multiple: true } : {}) };
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values as Record<string, string | string[] | boolean | undefined>;
  } catch (err) {
    throw new AgentError('WARMPOOL_INVALID_CONFIG', (err as Error).message);
  }
  if (values.help) return 'help';
  const file = typeof values.config === 'string' ? readConfigFile(values.config) : undefined;
  return resolveAgentConfig({ file, env, flags: values });
}

/**
 * The whole `warmpool agent` process: config, start, and signals. SIGTERM / SIGINT stop it
 * and leave the containers running (a restarted agent adopts them); SIGHUP forces a resync.
 */
export async function agentMain(argv: string[]): Promise<number> {
  let cfg: AgentConfig | 'help';
  try {
    cfg = agentConfigFromArgs(argv);
  } catch (err) {
    process.stderr.write(`warmpool agent: ${(err as Error).message}\n${AGENT_USAGE}\n`);
    return 2;
  }
  if (cfg === 'help') { process.stdout.write(`${AGENT_USAGE}\n`); return 0; }
  let running: RunningAgent;
  try {
    running = await runAgent(cfg);
  } catch (err) {
    const code = WarmpoolError.is(err) || AgentError.is(err) ? ` (${(err as AgentError).code})` : '';
    process.stderr.write(`warmpool agent: could not start: ${(err as Error).message}${code}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`warmpool agent: ${signal}, stopping (containers keep running for adoption)\n`);
      running.stop().then(() => resolve(0), (err: unknown) => {
        process.stderr.write(`warmpool agent: stop failed: ${(err as Error).message}\n`);
        resolve(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void running.agent.resync());
  });
}
