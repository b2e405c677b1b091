import { Command, CommanderError } from 'commander';
import type { ClientEnv } from '../config/env.js';
import { registerAuth } from './commands/auth.js';
import { registerJobs } from './commands/jobs.js';
import { registerKeys } from './commands/keys.js';
import { registerQueues } from './commands/queues.js';
import { registerSchedules } from './commands/schedules.js';
import { registerWebhooks } from './commands/webhooks.js';
import { CliContext, type GlobalOptions } from './context.js';
import { describeError, stackOf } from './errors.js';
import type { CliIo } from './output.js';

/** The first words that belong to the client commands (the rest of `jobline` runs the server). */
export const CLIENT_COMMANDS: readonly string[] = ['login', 'logout', 'whoami', 'jobs', 'queues', 'schedules', 'webhooks', 'keys'];

/** Builds the command tree. Commander's own error output is silenced: runClientCli prints one line. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('jobline')
    .description('talk to a Jobline server: jobs, queues, schedules, webhooks, API keys')
    .option('--url <url>', "the server (or JOBLINE_URL; default: the profile's, else http://localhost:3000)")
    .option('--api-key <key>', 'authenticate with this API key (or JOBLINE_API_KEY)')
    .option('--profile <name>', 'the stored profile to use (or JOBLINE_PROFILE; default "default")')
    .option('--json', 'machine-readable JSON on stdout')
    .option('--debug', 'show stack traces')
    .helpCommand(false)
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (text) => void ctx.io.stdout.write(text),
      writeErr: (text) => void ctx.io.stderr.write(text),
      outputError: () => undefined,
    });
  registerAuth(program, ctx);
  registerJobs(program, ctx);
  registerQueues(program, ctx);
  registerSchedules(program, ctx);
  registerWebhooks(program, ctx);
  registerKeys(program, ctx);
  // `--help` is enough; a `help` subcommand beside `jobs list` would only be one more word to know.
  const hideHelpCommand = (command: Command): void => {
    command.helpCommand(false);
    command.commands.forEach(hideHelpCommand);
  };
  hideHelpCommand(program);
  return program;
}

/** Runs one client command; resolves with the exit code. Never throws. */
export async function runClientCli(argv: string[], io: CliIo, env: ClientEnv): Promise<number> {
  let program: Command | null = null;
  const ctx = new CliContext(io, env, () => (program?.opts() ?? {}) as GlobalOptions);
  program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return commanderFailure(error, program, argv, io);
    const debug = ctx.globals.debug === true || argv.includes('--debug');
    io.stderr.write(`jobline: ${describeError(error, { url: ctx.url })}\n`);
    if (debug) io.stderr.write(`${stackOf(error)}\n`);
    return error instanceof Error && 'exitCode' in error && typeof error.exitCode === 'number' ? error.exitCode : 1;
  }
}

function commanderFailure(error: CommanderError, program: Command, argv: string[], io: CliIo): number {
  // Help and version output were already written; they are not failures.
  if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return 0;
  if (error.code === 'commander.help') return error.exitCode;
  const message = error.message
    .replace(/^error: /, '')
    .split('\n')
    .map((part) => part.trim())
    .filter(Boolean)
    .join(' ');
  io.stderr.write(`jobline: ${message}; see ${['jobline', ...commandPath(program, argv), '--help'].join(' ')}\n`);
  return error.exitCode === 0 ? 1 : error.exitCode;
}

/** The subcommand words of argv that name commands (`jobs submit`), for the help hint. */
function commandPath(program: Command, argv: string[]): string[] {
  const path: string[] = [];
  let current = program;
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index] ?? '';
    // Skip options, and the values of the global options that take one.
    if (['--url', '--api-key', '--profile'].includes(word)) index++;
    if (word.startsWith('-')) continue;
    const next = current.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) break;
    path.push(word);
    current = next;
  }
  return path;
}
