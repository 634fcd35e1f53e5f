/**
 * tao-infer command line. The commands are declarations (./commands/index.ts); only the one being run is
 * imported and built, so start-up pays for one command module. Each command parses its typed flags, asks for
 * missing inputs only when interactive, calls the library and renders text or --json. The global flags
 * (`--json`, `--yes`) are declared here, once. Errors become exit codes in one place (handleError; codes in
 * src/errors.ts and README.md).
 */
import { Command, CommanderError, Help } from '@commander-js/extra-typings';
import { readFileSync } from 'node:fs';
import { findProjectRoot } from '../util/root.js';
import type { GlobalFlags } from './io.js';
import { COMMANDS, declaredCommand, invokedCommand, type AnyCommand } from './commands/index.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(`${findProjectRoot()}/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The program with every command declared; `build` is the one built in full (the others only list themselves). */
async function program(build: string | undefined) {
  const program = new Command('tao-infer')
    .description('Launch NVIDIA TAO inference microservices on local Docker, Brev, DGX Cloud Lepton, Slurm or Kubernetes, keep a registry of what runs where, and send them requests.')
    .version(version())
    .option('--json', 'print one JSON document on stdout (results, and errors as {"error": {...}}); messages go to stderr')
    .option('-y, --yes', 'never prompt (also when CI is set or without a TTY): missing inputs are usage errors, confirmations are given')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({
      showGlobalOptions: true,
      // The listing shows each command's usage from its declaration (the command itself is not built).
      subcommandTerm: (cmd) => {
        const d = COMMANDS.find((c) => c.name === cmd.name());
        return d ? `${d.name} [options]${d.args ? ` ${d.args}` : ''}` : new Help().subcommandTerm(cmd);
      },
    })
    .exitOverride()
    .addHelpText(
      'after',
      `
Registry: $TAO_INF_STATE_FILE (default /tmp/tao-inf-ms-state.json).
Exit codes: 0 ok, 2 bad input, 3 platform failure, 4 service not ready, 5 request rejected, 6 registry problem.
Secrets (HF_TOKEN, NGC_KEY, ...) are read from the environment by name, never from flags.`,
    );
  for (const d of COMMANDS) {
    const cmd: AnyCommand = d.name === build ? await d.load() : declaredCommand(d.name);
    program.addCommand(cmd);
    cmd.copyInheritedSettings(program);
  }
  return program;
}

/**
 * Run the tao-infer CLI on `argv` (the arguments after the script name) and resolve its exit code
 * (0 ok, 1 unexpected, 2 bad input, 3 platform, 4 not ready, 5 rejected, 6 registry, 130 interrupted; README).
 * Never throws: every error goes through handleError.
 */
export async function main(argv: string[]): Promise<number> {
  let cli: Awaited<ReturnType<typeof program>> | undefined;
  try {
    cli = await program(invokedCommand(argv));
    await cli.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const flags: GlobalFlags = cli?.opts() ?? {};
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (err.code === 'commander.executeSubCommandAsync') return 1;
      // Usage errors (unknown option, missing argument, invalid choice): commander already printed them.
      if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: 'usage', message: err.message, exit_code: 2 } }, null, 2)}\n`);
      return 2;
    }
    // The error renderer (and the error classes) load only when there is an error to render.
    return (await import('./io.js')).handleError(err, flags);
  }
}

// `tao-infer ls | head`: a reader that closes the pipe early ends the output quietly (exit as decided so far),
// as other command-line tools do, instead of an unhandled EPIPE stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (err) => {
    process.exitCode = (await import('./io.js')).handleError(err, {});
  },
);
