import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { z } from 'zod';
import { emailAddress } from '../utils/email.js';

/**
 * The one place that reads process.env. Every JOBLINE_* variable is declared here with its
 * default; `.env.example` and the README's table list the same variables.
 */

export type Role = 'api' | 'worker' | 'scheduler' | 'all';

export type DatabaseConfig = { kind: 'sqlite'; file: string; synchronous?: 'NORMAL' | 'FULL' } | { kind: 'postgres'; url: string };

export interface Config {
  readonly mode: 'embedded' | 'distributed';
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  readonly redisUrl: string | null;
  /** Starts every Redis key and channel Jobline uses (BullMQ's included); deployments sharing a Redis use different ones. */
  readonly redisPrefix: string;
  readonly role: Role;
  readonly handlersDir: string | null;
  readonly adminEmail: string | null;
  readonly adminPassword: string | null;
  readonly jwtSecret: string | null;
  readonly accessTokenTtlMs: number;
  readonly refreshTokenTtlMs: number;
  readonly outboundAllow: readonly string[];
  readonly openRegistration: boolean;
  readonly webhookRetryDelays: readonly number[];
  /** An endpoint whose deliveries have all failed for this long is disabled (ms). */
  readonly webhookDisableAfterMs: number;
  readonly logLevel: string;
  readonly smtpUrl: string | null;
  readonly mailFrom: string;
  readonly publicUrl: string | null;
  readonly bodyLimit: number;
  readonly rateLimitPerMinute: number;
  readonly corsOrigins: readonly string[];
  readonly trustProxy: boolean;
  readonly shutdownGraceMs: number;
  readonly maxPayloadBytes: number;
  readonly leaseMs: number;
  readonly maxCrashes: number;
  readonly sweepIntervalMs: number;
  readonly retentionCompletedMs: number;
  readonly retentionFailedMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

const booleanText = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const integerText = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const listText = z.string().transform((value) =>
  value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0),
);

const cidr = z.string().refine((value) => CIDR_PATTERN.test(value), 'must be CIDRs such as 10.0.0.0/8 or fd00::/8');
const CIDR_PATTERN = /^([0-9.]+|[0-9a-fA-F:.]+)\/\d{1,3}$/;

const urlText = (protocols: string[]) =>
  z.string().refine((value) => {
    try {
      return protocols.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.map((protocol) => `${protocol}//`).join(' or ')}`);

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const DAY_MS = 86_400_000;

/** Every variable, its rule and its default (as the text a user would set). */
const schema = z.object({
  JOBLINE_PORT: integerText(0, 65_535).default(3000),
  JOBLINE_HOST: z.string().min(1).default('0.0.0.0'),
  JOBLINE_DATA_DIR: z.string().min(1).default('./data'),
  JOBLINE_DATABASE_URL: z
    .string()
    .refine((value) => /^(postgres|postgresql):\/\//.test(value) || value.startsWith('sqlite:'), {
      message: 'must be postgres://… or sqlite:<file>',
    })
    .optional(),
  JOBLINE_REDIS_URL: urlText(['redis:', 'rediss:']).optional(),
  JOBLINE_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1–64 letters, digits and _ . : -').default('jobline:'),
  JOBLINE_ROLE: z.enum(['api', 'worker', 'scheduler', 'all'], { error: 'must be api, worker, scheduler or all' }).default('all'),
  JOBLINE_HANDLERS_DIR: z.string().min(1).optional(),
  JOBLINE_ADMIN_EMAIL: emailAddress().optional(),
  JOBLINE_ADMIN_PASSWORD: z.string().min(8, 'must have at least 8 characters').max(1024).optional(),
  JOBLINE_JWT_SECRET: z.string().min(32, 'must have at least 32 characters').optional(),
  JOBLINE_ACCESS_TOKEN_TTL: integerText(10_000, DAY_MS).default(900_000),
  JOBLINE_REFRESH_TOKEN_TTL: integerText(60_000, 365 * DAY_MS).default(30 * DAY_MS),
  JOBLINE_OUTBOUND_ALLOW: listText.pipe(z.array(cidr)).default([]),
  JOBLINE_OPEN_REGISTRATION: booleanText.default(false),
  JOBLINE_WEBHOOK_RETRY_DELAYS: listText
    .pipe(z.array(z.string().regex(/^\d+$/, 'must be comma-separated milliseconds').transform(Number)))
    .default([5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
  JOBLINE_WEBHOOK_DISABLE_AFTER: integerText(1000, 365 * DAY_MS).default(5 * DAY_MS),
  JOBLINE_LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  JOBLINE_SMTP_URL: urlText(['smtp:', 'smtps:']).optional(),
  JOBLINE_MAIL_FROM: z.string().min(3).default('Jobline <jobline@localhost>'),
  JOBLINE_PUBLIC_URL: urlText(['http:', 'https:']).optional(),
  JOBLINE_BODY_LIMIT: integerText(1024, 100 * 1024 * 1024).default(1_048_576),
  JOBLINE_RATE_LIMIT: integerText(0, 1_000_000).default(6000),
  JOBLINE_CORS_ORIGINS: listText.default([]),
  JOBLINE_TRUST_PROXY: booleanText.default(false),
  JOBLINE_SHUTDOWN_GRACE: integerText(0, 3_600_000).default(30_000),
  JOBLINE_SQLITE_SYNCHRONOUS: z.enum(['NORMAL', 'FULL'], { error: 'must be NORMAL or FULL' }).default('NORMAL'),
  JOBLINE_MAX_PAYLOAD: integerText(1024, 64 * 1024 * 1024).default(262_144),
  JOBLINE_LEASE: integerText(1000, DAY_MS).default(30_000),
  JOBLINE_MAX_CRASHES: integerText(1, 100).default(3),
  JOBLINE_SWEEP_INTERVAL: integerText(10, 60_000).default(1000),
  JOBLINE_RETENTION_COMPLETED: integerText(0, 3650 * DAY_MS).default(7 * DAY_MS),
  JOBLINE_RETENTION_FAILED: integerText(0, 3650 * DAY_MS).default(30 * DAY_MS),
});

export interface LoadConfigOptions {
  /** Variables to read; process.env when absent. */
  env?: Record<string, string | undefined>;
  /** A .env file to read first (the environment wins over it); `false` reads none. */
  envFile?: string | false;
  /** Resolves relative paths; the process's working directory when absent. */
  cwd?: string;
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const cwd = options.cwd ?? process.cwd();
  const fromFile = readEnvFile(options.envFile ?? path.join(cwd, '.env'));
  const source = { ...fromFile, ...(options.env ?? process.env) };
  // An empty variable counts as unset, so `JOBLINE_X=` in a .env falls back to the default.
  const relevant = Object.fromEntries(
    Object.entries(source).filter(([name, value]) => name.startsWith('JOBLINE_') && value !== undefined && value !== ''),
  );
  const parsed = schema.safeParse(relevant);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  const env = parsed.data;
  const problems: string[] = [];
  const dataDir = path.resolve(cwd, env.JOBLINE_DATA_DIR);
  const database = databaseConfig(env.JOBLINE_DATABASE_URL, dataDir, cwd, env.JOBLINE_SQLITE_SYNCHRONOUS);
  if (env.JOBLINE_REDIS_URL && database.kind !== 'postgres') {
    problems.push('JOBLINE_REDIS_URL: distributed mode also needs JOBLINE_DATABASE_URL=postgres://…');
  }
  if (env.JOBLINE_REDIS_URL && !env.JOBLINE_JWT_SECRET) {
    problems.push('JOBLINE_JWT_SECRET: required in distributed mode, the same in every process (each one signs and checks tokens)');
  }
  if (env.JOBLINE_ADMIN_PASSWORD && !env.JOBLINE_ADMIN_EMAIL) {
    problems.push('JOBLINE_ADMIN_EMAIL: must be set when JOBLINE_ADMIN_PASSWORD is');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return deepFreeze({
    mode: env.JOBLINE_REDIS_URL ? 'distributed' : 'embedded',
    port: env.JOBLINE_PORT,
    host: env.JOBLINE_HOST,
    dataDir,
    database,
    redisUrl: env.JOBLINE_REDIS_URL ?? null,
    redisPrefix: env.JOBLINE_REDIS_PREFIX,
    role: env.JOBLINE_ROLE,
    handlersDir: env.JOBLINE_HANDLERS_DIR ? path.resolve(cwd, env.JOBLINE_HANDLERS_DIR) : null,
    adminEmail: env.JOBLINE_ADMIN_EMAIL?.toLowerCase() ?? null,
    adminPassword: env.JOBLINE_ADMIN_PASSWORD ?? null,
    jwtSecret: env.JOBLINE_JWT_SECRET ?? null,
    accessTokenTtlMs: env.JOBLINE_ACCESS_TOKEN_TTL,
    refreshTokenTtlMs: env.JOBLINE_REFRESH_TOKEN_TTL,
    outboundAllow: env.JOBLINE_OUTBOUND_ALLOW,
    openRegistration: env.JOBLINE_OPEN_REGISTRATION,
    webhookRetryDelays: env.JOBLINE_WEBHOOK_RETRY_DELAYS,
    webhookDisableAfterMs: env.JOBLINE_WEBHOOK_DISABLE_AFTER,
    logLevel: env.JOBLINE_LOG_LEVEL,
    smtpUrl: env.JOBLINE_SMTP_URL ?? null,
    mailFrom: env.JOBLINE_MAIL_FROM,
    publicUrl: env.JOBLINE_PUBLIC_URL?.replace(/\/+$/, '') ?? null,
    bodyLimit: env.JOBLINE_BODY_LIMIT,
    rateLimitPerMinute: env.JOBLINE_RATE_LIMIT,
    corsOrigins: env.JOBLINE_CORS_ORIGINS,
    trustProxy: env.JOBLINE_TRUST_PROXY,
    shutdownGraceMs: env.JOBLINE_SHUTDOWN_GRACE,
    maxPayloadBytes: env.JOBLINE_MAX_PAYLOAD,
    leaseMs: env.JOBLINE_LEASE,
    maxCrashes: env.JOBLINE_MAX_CRASHES,
    sweepIntervalMs: env.JOBLINE_SWEEP_INTERVAL,
    retentionCompletedMs: env.JOBLINE_RETENTION_COMPLETED,
    retentionFailedMs: env.JOBLINE_RETENTION_FAILED,
  });
}

function databaseConfig(url: string | undefined, dataDir: string, cwd: string, synchronous: 'NORMAL' | 'FULL'): DatabaseConfig {
  if (url === undefined) return { kind: 'sqlite', file: path.join(dataDir, 'jobline.db'), synchronous };
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length).replace(/^\/\//, '');
    return { kind: 'sqlite', file: file === ':memory:' ? file : path.resolve(cwd, file), synchronous };
  }
  return { kind: 'postgres', url };
}

function readEnvFile(file: string | false): Record<string, string> {
  if (file === false || !existsSync(file)) return {};
  return parseDotenv(readFileSync(file));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}

/** What the `jobline` client commands read from their environment (the server's Config is not involved). */
export interface ClientEnv {
  /** JOBLINE_URL: the server, overriding the profile's. */
  readonly url: string | null;
  /** JOBLINE_API_KEY: a key, overriding the profile's credentials. */
  readonly apiKey: string | null;
  /** JOBLINE_PROFILE: which stored profile to use; `default` when unset. */
  readonly profile: string | null;
  /** NO_COLOR (any non-empty value) turns colour off; FORCE_COLOR (not 0) turns it on off a terminal. */
  readonly noColor: boolean;
  readonly forceColor: boolean;
  /** Where profiles live: %APPDATA%\jobline on Windows, else $XDG_CONFIG_HOME/jobline or ~/.config/jobline. */
  readonly configDir: string;
}

export function readClientEnv(env: Record<string, string | undefined> = process.env, platform: NodeJS.Platform = process.platform): ClientEnv {
  const set = (name: string): string | null => {
    const value = env[name];
    return value === undefined || value === '' ? null : value;
  };
  const forceColor = set('FORCE_COLOR');
  return Object.freeze({
    url: set('JOBLINE_URL'),
    apiKey: set('JOBLINE_API_KEY'),
    profile: set('JOBLINE_PROFILE'),
    noColor: set('NO_COLOR') !== null,
    forceColor: forceColor !== null && forceColor !== '0' && forceColor !== 'false',
    configDir: clientConfigDir(set, platform),
  });
}

function clientConfigDir(set: (name: string) => string | null, platform: NodeJS.Platform): string {
  const join = platform === 'win32' ? path.win32.join : path.posix.join;
  const appData = set('APPDATA');
  if (platform === 'win32' && appData) return join(appData, 'jobline');
  const xdg = set('XDG_CONFIG_HOME');
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  if (xdg && path.isAbsolute(xdg)) return join(xdg, 'jobline');
  return join(set('HOME') ?? set('USERPROFILE') ?? homedir(), '.config', 'jobline');
}
