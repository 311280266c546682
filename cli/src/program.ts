import { Command, CommanderError, Option } from 'commander';
import { openStore, storeConfigFrom, WarmpoolError, DEFAULT_PREFIX, type KvStore } from '@warmpool/registry';
import { apply, drain, exportServices, inspect, sessions, status, validateOffline, CliError, type Io } from './commands.js';
import { createSession } from './session-create.js';
import { daemonCommands } from './daemons.js';
import { readFileSync } from 'node:fs';

/**
 * The version of this program: of the nearest package.json above this module that is the
 * CLI's, `@warmpool/cli` in the source tree (cli/dist/src/program.js) or `warmpool` in the
 * installable package (dist/warmpool.js, one bundle). "unknown" when neither is found; never
 * throws (a missing file must not stop every command).
 */
export function cliVersion(from: string | URL = import.meta.url): string {
  for (const up of ['../package.json', '../../package.json', '../../../package.json']) {
    try {
      const p = JSON.parse(readFileSync(new URL(up, from), 'utf8')) as { name?: unknown; version?: unknown };
      if ((p.name === '@warmpool/cli' || p.name === 'warmpool') && typeof p.version === 'string') return p.version;
    } catch { /* not there: look one level up */ }
  }
  return 'unknown';
}

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

/**
 * `opts` of a subcommand with the options given to its parent (`sessions --prefix X create`):
 * a flag on either wins over the environment, which wins over defaults; a flag on the
 * subcommand wins over one on the parent.
 */
function withParentFlags<T extends object>(opts: T, cmd: Command): T {
  const parent = cmd.parent;
  if (!parent) return opts;
  const rank = (source: string | undefined): number => (source === 'cli' ? 2 : source === 'env' ? 1 : 0);
  const out = { ...opts } as Record<string, unknown>;
  for (const [key, value] of Object.entries(parent.opts())) {
    if (rank(parent.getOptionValueSource(key)) > rank(cmd.getOptionValueSource(key))) out[key] = value;
  }
  return out as T;
}

export interface RegistryFlags {
  etcd?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdUser?: string; consul?: string; prefix: string; json?: boolean;
}

export async function storeFromFlags(f: RegistryFlags): Promise<KvStore> {
  if (!f.prefix.startsWith('/') || !f.prefix.endsWith('/')) {
    throw new CliError(`--prefix (or WARMPOOL_PREFIX) must start and end with "/", got ${JSON.stringify(f.prefix)} (e.g. ${JSON.stringify(`/${f.prefix.replace(/^\/+|\/+$/g, '')}/`)})`, 2);
  }
  return openStore(storeConfigFrom({ ...f, etcdPassword: process.env.WARMPOOL_ETCD_PASSWORD }));
}

/** Where the registry is, as the user gave it (for error messages). */
function registryName(f: RegistryFlags): string {
  return f.consul ? `Consul at ${f.consul} (--consul)` : `etcd at ${f.etcd ?? 'http://127.0.0.1:2379'} (--etcd / WARMPOOL_ETCD)`;
}

/**
 * An error of the registry client as one readable line: gRPC's "... Resolution note: " with
 * nothing after it (no name resolution was involved) is dropped.
 */
export function clientErrorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\.?\s*Resolution note:\s*$/, '').trim();
}

/** Thrown by reach() when the registry does not answer; carries the one-line reason. */
class Unreachable extends CliError {}

async function reach(f: RegistryFlags): Promise<KvStore> {
  const store = await storeFromFlags(f);
  // One read first: an unreachable registry is a clear error within seconds, not a command
  // that waits for it forever.
  try {
    await store.get(f.prefix);
  } catch (err) {
    await store.close().catch(() => undefined);
    throw new Unreachable(`cannot reach the registry, ${registryName(f)}: ${clientErrorText(err)}`);
  }
  return store;
}

async function withStore(f: RegistryFlags, fn: (store: KvStore) => Promise<void>): Promise<void> {
  const store = await reach(f);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

export function buildProgram(): Command {
  const program = new Command('warmpool')
    // Options after a subcommand are its own (`sessions create chatbot --json`), not its parent's.
    .enablePositionalOptions()
    // Usage errors are thrown (main() exits 2), not process.exit(1) inside the parser.
    .exitOverride()
    .description('Warm pools of slow-booting AI containers, one ready instance per session.')
    .version(cliVersion(), '-V, --version', 'print the version and exit')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  addRegistryOptions(program.command('apply').description('store the desired services in the registry; every agent converges on it'))
    .requiredOption('-f, --file <file>', 'services file (YAML or JSON)')
    .option('--prune', 'delete services that the file does not list')
    .option('--dry-run', 'show what would change')
    .action(async (o: RegistryFlags & { file: string; prune?: boolean; dryRun?: boolean }) => {
      const run = (s: KvStore): Promise<void> => apply(s, o.prefix, io, { file: o.file, prune: o.prune, dryRun: o.dryRun, json: o.json });
      if (!o.dryRun) return withStore(o, run);
      // A dry run validates the file even with no registry reachable; the diff needs one.
      let store: KvStore;
      try {
        store = await reach(o);
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        return validateOffline(io, { file: o.file, json: o.json, unreachable: err.message });
      }
      try {
        await run(store);
      } finally {
        await store.close();
      }
    });

  addRegistryOptions(program.command('status').description('hosts, and per service: target, ready, booting, claimed; boot progress'))
    .action((o: RegistryFlags) => withStore(o, (s) => status(s, o.prefix, io, { json: o.json, registry: registryName(o) })));

  const sessionsCmd = addRegistryOptions(program.command('sessions').description('active sessions (list); `sessions create SERVICE` opens one'))
    .option('--service <name>', 'only this service')
    .action((o: RegistryFlags & { service?: string }) => withStore(o, (s) => sessions(s, o.prefix, io, { json: o.json, service: o.service })));
  addRegistryOptions(sessionsCmd.command('create').description('open a session through a router; while it waits for a booting instance, progress on stderr').argument('<service>'))
    .addOption(new Option('--router <url>', 'router base URL').env('WARMPOOL_ROUTER').default('http://127.0.0.1:8080'))
    .addOption(new Option('--wait <sec>', 'seconds to wait for a booting instance (the router caps it)').default('120'))
    .option('--quiet', 'print only the session id (SID=$(warmpool sessions create chatbot --quiet))')
    .action(async (service: string, own: RegistryFlags & { router: string; wait: string; quiet?: boolean }, cmd: Command) => {
      // Registry flags given before `create` (sessions --json create ...) count too.
      const o = withParentFlags(own, cmd);
      const waitSec = Number(o.wait);
      if (!Number.isFinite(waitSec) || waitSec < 0 || waitSec > 3600) throw new CliError(`--wait must be a number of seconds from 0 to 3600, got ${JSON.stringify(o.wait)}`, 2);
      // The registry only feeds the progress lines: without one, the session is still opened.
      const store = await reach(o).catch((err: unknown) => {
        if (err instanceof Unreachable) return undefined;
        throw err;
      });
      try {
        await createSession(store, o.prefix, io, { service, router: o.router, waitSec, quiet: o.quiet, json: o.json });
      } finally {
        await store?.close();
      }
    });

  addRegistryOptions(program.command('export').description('print the registry\'s services as a services file (`warmpool apply -f` takes it back): backups, moving to a new cluster'))
    .action((o: RegistryFlags) => withStore(o, (s) => exportServices(s, o.prefix, io, { json: o.json })));

  addRegistryOptions(program.command('drain').description('start no new instances on HOST; claimed ones finish').argument('<host>'))
    .option('--undo', 'accept new instances again')
    .action((host: string, o: RegistryFlags & { undo?: boolean }) => withStore(o, (s) => drain(s, o.prefix, io, { host, undo: o.undo, json: o.json })));

  addRegistryOptions(program.command('inspect').description('one record as JSON').argument('<kind>', 'service | host | instance | session').argument('<id>'))
    .action((kind: string, id: string, o: RegistryFlags) => withStore(o, (s) => inspect(s, o.prefix, io, { kind, id })));

  // addCommand does not pass on the program's settings: usage errors exit 2 here too.
  for (const cmd of daemonCommands()) program.addCommand(addRegistryOptions(cmd).exitOverride().showHelpAfterError());
  return program;
}

/**
 * Run from the installed package (a sidecar bundle next to the CLI bundle), `warmpool agent`
 * makes sure its sidecar image exists on this host before it starts, building it from the
 * package when missing. Bad settings are left to the agent to report; a failed build is a
 * warning (the agent then reports each instance it cannot start).
 */
async function ensurePackagedSidecarImage(args: string[], parse: (argv: string[]) => { sidecar: { image: string }; docker: { socketPath: string } } | 'help'): Promise<void> {
  const { packagedSidecarBundle, ensureSidecarImage } = await import('./sidecar-image.js');
  const bundle = packagedSidecarBundle(import.meta.url);
  if (!bundle) return;
  let cfg: ReturnType<typeof parse>;
  try {
    cfg = parse(args);
  } catch {
    return;
  }
  if (cfg === 'help') return;
  const { default: Docker } = await import('dockerode');
  const log = (msg: string): void => { process.stderr.write(`warmpool agent: ${msg}\n`); };
  await ensureSidecarImage({ image: cfg.sidecar.image, bundle, docker: new Docker({ socketPath: cfg.docker.socketPath }), log })
    .catch((err: unknown) => log(`warning: could not build the sidecar image ${cfg.sidecar.image}: ${(err as Error).message}`));
}

export async function main(argv: string[]): Promise<number> {
  // The agent and the sidecar parse their own settings (file < WARMPOOL_* env < flags).
  if (argv[2] === 'agent') {
    const { agentMain, agentConfigFromArgs } = await import('@warmpool/agent/run');
    await ensurePackagedSidecarImage(argv.slice(3), agentConfigFromArgs);
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
    // Commander has said what was wrong (or printed the help): usage errors exit 2.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
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

