#!/usr/bin/env node
/**
 * tao-infer command line. Each command parses flags, asks for missing inputs only when interactive,
 * calls one library function (src/lifecycle.ts) and renders text or --json. Errors become exit codes
 * in one place (handleError; codes in src/errors.ts and README.md).
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { findProjectRoot } from '../util/root.js';
import { handleError, type GlobalFlags } from './io.js';
import { startCommand } from './commands/start.js';
import { requestCommand } from './commands/request.js';
import { gatewayCommand } from './commands/gateway.js';
import { archsCommand, discoverCommand, logsCommand, lsCommand, pruneCommand, stopCommand, tunnelCommand } from './commands/manage.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(`${findProjectRoot()}/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * Run the tao-infer CLI on `argv` (process.argv shape: node, script, args...) and resolve its exit code
 * (0 ok, 1 unexpected, 2 bad input, 3 platform, 4 not ready, 5 rejected, 6 registry, 130 interrupted; README).
 * Never throws: every error goes through handleError.
 */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('tao-infer')
    .description('Launch NVIDIA TAO inference microservices on local Docker, Brev, DGX Cloud Lepton, Slurm or Kubernetes, keep a registry of what runs where, and send them requests.')
    .version(version())
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Registry: $TAO_INF_STATE_FILE (default /tmp/tao-inf-ms-state.json).
Exit codes: 0 ok, 2 bad input, 3 platform failure, 4 service not ready, 5 request rejected, 6 registry problem.
Secrets (HF_TOKEN, NGC_KEY, ...) are read from the environment by name, never from flags.`,
    );
  for (const c of [startCommand(), requestCommand(), stopCommand(), lsCommand(), discoverCommand(), pruneCommand(), logsCommand(), archsCommand(), tunnelCommand(), gatewayCommand()]) program.addCommand(c);
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  const flags: GlobalFlags = { json: argv.includes('--json'), yes: argv.includes('--yes') || argv.includes('-y') };
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (err.code === 'commander.executeSubCommandAsync') return 1;
      // Usage errors (unknown option, missing argument, invalid choice): commander already printed them.
      if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: 'usage', message: err.message, exit_code: 2 } }, null, 2)}\n`);
      return 2;
    }
    return handleError(err, flags);
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
  (err) => {
    process.exitCode = handleError(err, {});
  },
);
