import { Command, Option } from 'commander';
import { openStore, storeConfigFrom, WarmpoolError, DEFAULT_PREFIX, type KvStore } from '@warmpool/registry';
import { apply, drain, inspect, sessions, status, CliError, type Io } from './commands.js';
import { daemonCommands } from './daemons.js';

const io: Io = { out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };

/** Registry connection flags shared by every subcommand (flags win over WARMPOOL_* env). */
export function addRegistryOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--etcd <urls>', 'etcd endpoints, comma separated').env('WARMPOOL_ETCD'))
    .addOption(new Option('--etcd-ca <file>', 'CA bundle for etcd TLS').env('WARMPOOL_ETCD_CA'))
    .addOption(new Option('--etcd-cert <file>', 'client certificate for etcd').env('WARMPOOL_ETCD_CERT'))
    .addOption(new Option('--etcd-key <file>', 'client key for etcd').env('WARMPOOL_ETCD_KEY'))
    .addOption(new Option('--etcd-user <name>', 'etcd user (password from WARMPOOL_ETCD_PASSWORD)').env('WARMPOOL_ETCD_USER'))
    .addOption(new Option('--consul <host:port>', 'use Consul as the registry instead of etcd').env('WARMPOOL_CONSUL'))
    .addOption(new Option('--prefix <prefix>', 'registry key prefix').env('WARMPOOL_PREFIX').default(DEFAULT_PREFIX))
    .addOption(new Option('--json', 'machine-readable output'));
}

export interface RegistryFlags {
  etcd?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdUser?: string; consul?: string; prefix: string; json?: boolean;
}

export async function storeFromFlags(f: RegistryFlags): Promise<KvStore> {
  return openStore(storeConfigFrom({ ...f, etcdPassword: process.env.WARMPOOL_ETCD_PASSWORD }));
}

/** Where the registry is, as the user gave it (for error messages). */
function registryName(f: RegistryFlags): string {
  return f.consul ? `Consul at ${f.consul} (--consul)` : `etcd at ${f.etcd ?? 'http://127.0.0.1:2379'} (--etcd / WARMPOOL_ETCD)`;
}

async function withStore(f: RegistryFlags, fn: (store: KvStore) => Promise<void>): Promise<void> {
  const store = await storeFromFlags(f);
  try {
    // One read first: an unreachable registry is a clear error within seconds, not a command
    // that waits for it forever.
    try {
      await store.get(f.prefix);
    } catch (err) {
      throw new CliError(`cannot reach the registry, ${registryName(f)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    await fn(store);
  } finally {
    await store.close();
  }
}

export function buildProgram(): Command {
  const program = new Command('warmpool')
    .description('Warm pools of slow-booting AI containers, one ready instance per session.')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  addRegistryOptions(program.command('apply').description('store the desired services in the registry; every agent converges on it'))
    .requiredOption('-f, --file <file>', 'services file (YAML or JSON)')
    .option('--prune', 'delete services that the file does not list')
    .option('--dry-run', 'show what would change')
    .action((o: RegistryFlags & { file: string; prune?: boolean; dryRun?: boolean }) =>
      withStore(o, (s) => apply(s, o.prefix, io, { file: o.file, prune: o.prune, dryRun: o.dryRun, json: o.json })));

  addRegistryOptions(program.command('status').description('hosts, and per service: target, ready, booting, claimed; boot progress'))
    .action((o: RegistryFlags) => withStore(o, (s) => status(s, o.prefix, io, { json: o.json })));

  addRegistryOptions(program.command('sessions').description('active sessions'))
    .option('--service <name>', 'only this service')
    .action((o: RegistryFlags & { service?: string }) => withStore(o, (s) => sessions(s, o.prefix, io, { json: o.json, service: o.service })));

  addRegistryOptions(program.command('drain').description('start no new instances on HOST; claimed ones finish').argument('<host>'))
    .option('--undo', 'accept new instances again')
    .action((host: string, o: RegistryFlags & { undo?: boolean }) => withStore(o, (s) => drain(s, o.prefix, io, { host, undo: o.undo, json: o.json })));

  addRegistryOptions(program.command('inspect').description('one record as JSON').argument('<kind>', 'service | host | instance | session').argument('<id>'))
    .action((kind: string, id: string, o: RegistryFlags) => withStore(o, (s) => inspect(s, o.prefix, io, { kind, id })));

  for (const cmd of daemonCommands()) program.addCommand(addRegistryOptions(cmd));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // The agent and the sidecar parse their own settings (file < WARMPOOL_* env < flags).
  if (argv[2] === 'agent') {
    const { agentMain } = await import('@warmpool/agent/run');
    return agentMain(argv.slice(3));
  }
  if (argv[2] === 'sidecar') {
    if (argv.length > 3) {
      io.err('warmpool sidecar takes no arguments: it is configured by WARMPOOL_* variables (see sidecar/README.md)');
      return 2;
    }
    await import('@warmpool/sidecar/main');
    return 0;
  }
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`warmpool: ${err.message}`);
      return err.exitCode;
    }
    if (WarmpoolError.is(err)) {
      io.err(`warmpool: ${err.message} (${err.code})`);
      return 1;
    }
    io.err(`warmpool: ${(err as Error)?.stack ?? String(err)}`);
    return 1;
  }
}

