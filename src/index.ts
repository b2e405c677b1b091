import { parseArgs } from 'node:util';
import { startServer } from './bootstrap.js';
import { CLIENT_COMMANDS, runClientCli } from './cli/main.js';
import { createDatabase, migrateToLatest } from './config/database.js';
import { ConfigError, loadConfig, readClientEnv } from './config/env.js';
import { UserService } from './services/userService.js';
import { systemClock } from './utils/clock.js';
import { AppError } from './utils/errors.js';

const USAGE = `Usage:
  jobline start                      run the server (embedded mode unless JOBLINE_DATABASE_URL/JOBLINE_REDIS_URL say otherwise)
  jobline migrate                    apply pending database migrations and exit
  jobline user create --email E --password P [--role admin|user]
                                     create a user and exit
Configuration comes from JOBLINE_* environment variables and an optional .env file (see .env.example).

Talking to a server (see docs/cli.md; jobline <command> --help for each):
  jobline login --url URL (--api-key KEY | --email E [--password P])   store a profile; jobline logout
  jobline jobs submit|list|get|follow|retry|cancel|delete                jobs
  jobline queues [pause|resume NAME]                                     queue counts, pause and resume
  jobline schedules list|create|pause|resume                             cron schedules
  jobline webhooks list|deliveries|redeliver                             webhook endpoints and deliveries
  jobline keys list|create|revoke                                        API keys
  global: --url URL  --api-key KEY  --profile NAME  --json  --debug`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command === undefined ? 1 : 0;
  }
  // Client commands need no server configuration: they talk to a server over HTTP.
  if (CLIENT_COMMANDS.includes(command) || command.startsWith('-')) {
    // `jobline jobs list | head` closes stdout early: stop quietly, as other tools do.
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      throw error;
    });
    return runClientCli(argv, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }, readClientEnv());
  }
  if (command !== 'start' && command !== 'migrate' && command !== 'user') {
    console.error(`jobline: unknown command '${command}'; run jobline --help`);
    return 1;
  }
  const config = loadConfig();
  switch (command) {
    case 'start':
      await startServer(config);
      return -1; // keeps running until a signal
    case 'migrate': {
      const database = createDatabase(config.database);
      try {
        const applied = await migrateToLatest(database.db);
        console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'database is up to date');
      } finally {
        await database.close();
      }
      return 0;
    }
    case 'user':
      return userCommand(rest, config);
    default:
      return 1;
  }
}

async function userCommand(args: string[], config: ReturnType<typeof loadConfig>): Promise<number> {
  const [subcommand, ...flags] = args;
  if (subcommand !== 'create') {
    console.error(`Unknown 'user' command.\n${USAGE}`);
    return 1;
  }
  const { values } = parseArgs({
    args: flags,
    options: { email: { type: 'string' }, password: { type: 'string' }, role: { type: 'string', default: 'user' } },
    strict: true,
  });
  const { email, password, role } = values;
  if (!email || !password) {
    console.error('jobline user create needs --email and --password.');
    return 1;
  }
  if (role !== 'admin' && role !== 'user') {
    console.error('--role must be admin or user.');
    return 1;
  }
  if (password.length < 8) {
    console.error('--password must have at least 8 characters.');
    return 1;
  }
  const database = createDatabase(config.database);
  try {
    await migrateToLatest(database.db);
    const user = await new UserService(database.db, systemClock).create({ email, password, role });
    console.log(`created ${user.role} ${user.email} (${user.id})`);
  } finally {
    await database.close();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof AppError) console.error(error.message);
    else console.error(error);
    process.exitCode = 1;
  },
);
