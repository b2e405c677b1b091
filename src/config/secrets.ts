import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { errorCode } from '../utils/errors.js';
import { randomToken } from '../utils/ids.js';
import type { Config } from './env.js';

export const JWT_SECRET_FILE = 'jwt-secret';

/**
 * The access-token signing secret: JOBLINE_JWT_SECRET when set, otherwise one generated on
 * first start and kept in the data directory, readable by its owner only.
 */
export function loadJwtSecret(config: Config): Uint8Array {
  if (config.jwtSecret) return new TextEncoder().encode(config.jwtSecret);
  const file = path.join(config.dataDir, JWT_SECRET_FILE);
  mkdirSync(config.dataDir, { recursive: true });
  try {
    // 'wx' fails if the file exists, so two processes starting together keep one secret.
    writeFileSync(file, randomToken(48), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error;
  }
  const secret = readFileSync(file, 'utf8').trim();
  if (secret.length < 32) throw new Error(`${file} holds a secret shorter than 32 characters; delete it or set JOBLINE_JWT_SECRET.`);
  return new TextEncoder().encode(secret);
}
