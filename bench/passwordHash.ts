import { performance } from 'node:perf_hooks';
import { hashPassword, PASSWORD_HASH_PARAMS, verifyPassword } from '../src/utils/crypto.js';
import { summarize } from './stats.js';

/** How long one argon2id hash and one verification take with the parameters the server uses. */
export async function run(): Promise<void> {
  const rounds = 30;
  const hashes: number[] = [];
  const verifies: number[] = [];
  let stored = await hashPassword('warm-up-password');
  for (let i = 0; i < rounds; i += 1) {
    let started = performance.now();
    stored = await hashPassword(`password-${i}`);
    hashes.push(performance.now() - started);
    started = performance.now();
    await verifyPassword(stored, `password-${i}`);
    verifies.push(performance.now() - started);
  }
  const { memoryCost, timeCost, parallelism } = PASSWORD_HASH_PARAMS;
  console.log(`argon2id m=${memoryCost} KiB t=${timeCost} p=${parallelism}`);
  console.log(summarize('hash', hashes));
  console.log(summarize('verify', verifies));
}
