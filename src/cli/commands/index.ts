/**
 * The commands of the CLI as declarations: name, one-line summary, usage term and a `load()` that imports the
 * command's module and builds its commander `Command` (typed options, its action over the library). The CLI
 * (src/cli/main.ts) builds only the command being run; the others appear in the top-level help from this table
 * alone, so `tao-infer --help` and `tao-infer ls` load one command module at most.
 *
 * Adding a command = one module under src/cli/commands/ exporting a builder + one line here.
 * Global flags (`--json`, `--yes`) are declared once, on the program (main.ts), not per command.
 */
import { Command } from '@commander-js/extra-typings';

/** A command as the CLI lists it before loading it. */
export interface CommandDeclaration {
  readonly name: string;
  /** What the command does, one sentence (the top-level help and the command's own help). */
  readonly summary: string;
  /** Arguments as the usage shows them after `[options]`, e.g. `[job_id]`; '' when none. */
  readonly args: string;
  /** Import the command's module and build its commander Command (named `name`, described by `summary`). */
  load(): Promise<AnyCommand>;
}

/** A built command, whatever its typed options and arguments. */
export type AnyCommand = Command<any, any, any>;

/** Every command, in the order the top-level help lists them. */
export const COMMANDS: readonly CommandDeclaration[] = [
  {
    name: 'start',
    summary: 'Start an inference microservice, record it in the registry and wait until its model is ready',
    args: '',
    load: async () => (await import('./start.js')).startCommand(),
  },
  {
    name: 'request',
    summary: 'Send a chat-completion request to a running service (routing: --job, else --arch, else the only service)',
    args: '',
    load: async () => (await import('./request.js')).requestCommand(),
  },
  {
    name: 'stop',
    summary: 'Stop a service on its platform and remove it from the registry (no id: asks which, the latest first; with --yes the latest)',
    args: '[job_id]',
    load: async () => (await import('./stop.js')).stopCommand(),
  },
  {
    name: 'ls',
    summary: 'List services in the registry with their live state from the platform',
    args: '',
    load: async () => (await import('./ls.js')).lsCommand(),
  },
  {
    name: 'discover',
    summary:
      'Find the services tao-infer launched on each platform (by their labels / markers) and add the missing ones to the registry; forwarders are restarted so host_url works',
    args: '',
    load: async () => (await import('./discover.js')).discoverCommand(),
  },
  {
    name: 'prune',
    summary: 'Remove registry entries whose service is gone or has ended (complete, error, canceled), with their platform objects and forwarders; never entries in state unknown',
    args: '',
    load: async () => (await import('./prune.js')).pruneCommand(),
  },
  { name: 'logs', summary: 'Show the logs of a service', args: '<job_id>', load: async () => (await import('./logs.js')).logsCommand() },
  {
    name: 'archs',
    summary: 'List the supported network_archs and the images they resolve to',
    args: '',
    load: async () => (await import('./archs.js')).archsCommand(),
  },
  {
    name: 'tunnel',
    summary: 'Restart the local forwarder (SSH tunnel or port-forward on this machine) of a service',
    args: '<job_id>',
    load: async () => (await import('./tunnel.js')).tunnelCommand(),
  },
  {
    name: 'gateway',
    summary: 'Serve every running service under one OpenAI-compatible URL (routes by model = job_id or network_arch); runs until Ctrl-C',
    args: '',
    load: async () => (await import('./gateway.js')).gatewayCommand(),
  },
];

/** The declaration named `name`. @throws Error for a name not in COMMANDS (a bug: builders name only declared commands). */
export function declared(name: string): CommandDeclaration {
  const d = COMMANDS.find((c) => c.name === name);
  if (!d) throw new Error(`command '${name}' is not declared in src/cli/commands/index.ts`);
  return d;
}

/**
 * The command `argv` (the arguments after the script name) runs, also for `help <command>`; undefined for the
 * top-level help, `--version` or a name that is not a command (commander reports it). The program's own options
 * (--json, --yes, --help, --version) take no value, so the first word that is not an option names the command.
 */
export function invokedCommand(argv: readonly string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  const name = words[0] === 'help' ? words[1] : words[0];
  return COMMANDS.some((c) => c.name === name) ? name : undefined;
}

/** A new command named and described by its declaration (a builder's first line). */
export function declaredCommand(name: string): Command {
  const d = declared(name);
  return new Command(d.name).description(d.summary);
}
