#!/usr/bin/env node
// The `jobline` command: runs the compiled build when present, the TypeScript sources otherwise.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = fileURLToPath(new URL('../dist/index.js', import.meta.url));
if (existsSync(built)) {
  await import(built);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/index.ts', import.meta.url).href);
}
