import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env.js';

const load = (env: Record<string, string>, cwd = '/srv/jobline') => loadConfig({ env, envFile: false, cwd });

describe('configuration', () => {
  it('defaults to embedded mode with SQLite in ./data', () => {
    const config = load({});
    expect(config).toMatchObject({
      mode: 'embedded',
      port: 3000,
      host: '0.0.0.0',
      dataDir: '/srv/jobline/data',
      database: { kind: 'sqlite', file: '/srv/jobline/data/jobline.db', synchronous: 'NORMAL' },
      role: 'all',
      openRegistration: false,
      bodyLimit: 1_048_576,
      accessTokenTtlMs: 900_000,
      logLevel: 'info',
    });
    expect(config.webhookRetryDelays).toEqual([5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000]);
  });

  it('is frozen', () => {
    const config = load({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.database)).toBe(true);
  });

  it('parses every kind of value', () => {
    const config = load({
      JOBLINE_PORT: '0',
      JOBLINE_DATABASE_URL: 'postgres://u@db:5432/jobline',
      JOBLINE_REDIS_URL: 'redis://cache:6379',
      JOBLINE_REDIS_PREFIX: 'team-a:',
      JOBLINE_JWT_SECRET: 'x'.repeat(32),
      JOBLINE_ROLE: 'worker',
      JOBLINE_OPEN_REGISTRATION: 'true',
      JOBLINE_OUTBOUND_ALLOW: '10.0.0.0/8, fd00::/8',
      JOBLINE_WEBHOOK_RETRY_DELAYS: '100,200',
      JOBLINE_ADMIN_EMAIL: 'Boss@Example.com',
      JOBLINE_ADMIN_PASSWORD: 'long-enough',
    });
    expect(config).toMatchObject({
      mode: 'distributed',
      port: 0,
      database: { kind: 'postgres', url: 'postgres://u@db:5432/jobline' },
      redisUrl: 'redis://cache:6379',
      redisPrefix: 'team-a:',
      role: 'worker',
      openRegistration: true,
      outboundAllow: ['10.0.0.0/8', 'fd00::/8'],
      webhookRetryDelays: [100, 200],
      adminEmail: 'boss@example.com',
    });
  });

  it.each([
    ['JOBLINE_PORT', 'abc'],
    ['JOBLINE_PORT', '70000'],
    ['JOBLINE_ROLE', 'boss'],
    ['JOBLINE_DATABASE_URL', 'mysql://x'],
    ['JOBLINE_REDIS_URL', 'http://x'],
    ['JOBLINE_OPEN_REGISTRATION', 'maybe'],
    ['JOBLINE_OUTBOUND_ALLOW', '10.0.0.1'],
    ['JOBLINE_WEBHOOK_RETRY_DELAYS', '5s,10s'],
    ['JOBLINE_JWT_SECRET', 'short'],
    ['JOBLINE_LOG_LEVEL', 'loud'],
    ['JOBLINE_ADMIN_EMAIL', 'not-an-email'],
    ['JOBLINE_REDIS_PREFIX', 'has space'],
  ])('refuses %s=%s naming the variable', (name, value) => {
    expect(() => load({ [name]: value })).toThrow(ConfigError);
    expect(() => load({ [name]: value })).toThrow(name);
  });

  it('needs PostgreSQL for distributed mode', () => {
    expect(() => load({ JOBLINE_REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/JOBLINE_REDIS_URL.*JOBLINE_DATABASE_URL/);
  });

  it('needs one shared JWT secret in distributed mode', () => {
    expect(() => load({ JOBLINE_REDIS_URL: 'redis://127.0.0.1:6379', JOBLINE_DATABASE_URL: 'postgres://u@db/jobline' })).toThrow(
      /JOBLINE_JWT_SECRET: required in distributed mode/,
    );
  });

  it('reads a .env file, with the environment taking precedence and empty values meaning unset', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'jobline-env-'));
    writeFileSync(path.join(dir, '.env'), 'JOBLINE_PORT=4000\nJOBLINE_HOST=127.0.0.1\nJOBLINE_LOG_LEVEL=\n');
    const config = loadConfig({ env: { JOBLINE_HOST: '::1' }, cwd: dir });
    expect(config.port).toBe(4000);
    expect(config.host).toBe('::1');
    expect(config.logLevel).toBe('info');
  });

  it('lists every variable in .env.example', async () => {
    const { readFileSync } = await import('node:fs');
    const example = readFileSync(path.join(import.meta.dirname, '../../.env.example'), 'utf8');
    const source = readFileSync(path.join(import.meta.dirname, '../../src/config/env.ts'), 'utf8');
    const declared = [...source.matchAll(/^\s+(JOBLINE_[A-Z_]+):/gm)].map((match) => match[1]);
    expect(declared.length).toBeGreaterThan(20);
    for (const name of declared) expect(example, `${name} missing from .env.example`).toContain(`${name}=`);
  });
});
