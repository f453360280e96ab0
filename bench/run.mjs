#!/usr/bin/env node
// `npm run bench`: runs every suite in bench/suites/ one after another (they measure
// CPU and memory, so they must not overlap), prints their tables and keeps their JSON
// in bench/out/. `npm run bench -- NAME` runs the suites whose file name contains NAME;
// flags after the names (`npm run bench -- autotune --minutes 2`) go to those suites.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { arch, cpus, release, totalmem } from 'node:os';

const suitesDir = new URL('./suites/', import.meta.url);
const args = process.argv.slice(2);
const firstFlag = args.findIndex((arg) => arg.startsWith('--'));
const filters = firstFlag < 0 ? args : args.slice(0, firstFlag);
const suiteArgs = firstFlag < 0 ? [] : args.slice(firstFlag);
const suites = readdirSync(suitesDir)
  .filter((file) => file.endsWith('.mjs'))
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();

mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
console.log(`ksm-preload benchmarks, ${new Date().toISOString()}`);
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()} ${arch()}, Node ${process.version}`);
let failed = 0;
for (const suite of suites) {
  console.log(`\n## ${suite.replace(/\.mjs$/, '')}\n`);
  const result = spawnSync(process.execPath, ['--expose-gc', new URL(suite, suitesDir).pathname, ...suiteArgs], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.log(`suite ${suite} exited with ${result.status ?? result.signal}`);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
