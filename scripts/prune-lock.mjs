#!/usr/bin/env node
// The registry this project installs from serves only some platforms' builds of optional native
// packages (msgpackr-extract for macOS and Windows is missing). npm then writes a lock that lists
// those optional builds without entries, and `npm ci` refuses it. This drops, from each package's
// optionalDependencies in package-lock.json, the names the lock has no entry for.
// Run it after `npm install <something>`: node scripts/prune-lock.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
let pruned = 0;
for (const [location, entry] of Object.entries(lock.packages)) {
  if (!entry.optionalDependencies) continue;
  const base = location === '' ? '' : `${location}/`;
  for (const name of Object.keys(entry.optionalDependencies)) {
    const present = `${base}node_modules/${name}` in lock.packages || `node_modules/${name}` in lock.packages;
    if (!present) {
      delete entry.optionalDependencies[name];
      pruned += 1;
    }
  }
}
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(pruned > 0 ? `pruned ${pruned} unresolvable optional dependencies` : 'lock file is consistent');
