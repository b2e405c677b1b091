/**
 * Runs the benchmarks and prints their figures. `npm run bench` runs them all;
 * `npm run bench -- startup` runs the named ones.
 */
const BENCHMARKS: Record<string, () => Promise<{ run(): Promise<void> }>> = {
  passwordHash: () => import('./passwordHash.js'),
  startup: () => import('./startup.js'),
  realtime: () => import('./realtime.js'),
  schedules: () => import('./schedules.js'),
  throughput: () => import('./throughput.js'),
  distributed: () => import('./distributed.js'),
  ceiling: () => import('./ceiling.js'),
  latency: () => import('./latency.js'),
  memory: () => import('./memory.js'),
  listing: () => import('./listing.js'),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in BENCHMARKS));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHMARKS).join(', ')}`);
  process.exit(1);
}
for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHMARKS)) {
  console.log(`\n## ${name}`);
  const benchmark = await BENCHMARKS[name]!();
  await benchmark.run();
}
