// Hook latency in a program with many VMAs (max_map_count defaults to 65530): every
// malloc/free pair timed in thread CPU time, no library against madvise mode (with and
// without PROCMAP_QUERY), at 10,000 and 60,000 VMAs. The slowest pairs are those that
// carried a walk of /proc/self/maps. Writes bench/out/walk-latency.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'ksm-bench-walk-'));
const SECONDS = 4;
const VMA_COUNTS = [10_000, 60_000];

function preloadLibrary() {
  const built = join(root, 'build', 'Release', 'libksm_preload.so');
  if (existsSync(built)) return built;
  const out = join(work, 'libksm_preload.so');
  const sources = readdirSync(join(root, 'native', 'preload')).filter((f) => f.endsWith('.c')).map((f) => join(root, 'native', 'preload', f));
  execFileSync('cc', ['-O2', '-std=gnu11', '-fvisibility=hidden', '-fPIC', '-shared', `-I${join(root, 'native', 'common')}`, '-o', out, ...sources, join(root, 'native', 'common', 'maps_scan.c'), '-ldl', '-lpthread']);
  return out;
}

const library = preloadLibrary();
const workload = join(work, 'many_vmas');
execFileSync('cc', ['-O2', '-o', workload, join(root, 'bench', 'workloads', 'many_vmas.c')]);

const variants = {
  none: {},
  madvise: { LD_PRELOAD: library, KSM_PRELOAD_MODE: 'madvise' },
  'madvise, walks only': { LD_PRELOAD: library, KSM_PRELOAD_MODE: 'madvise', KSM_PRELOAD_TEST_NO_PROCMAP_QUERY: '1' },
};

function measure(vmas, variant) {
  const env = { ...process.env, ...variants[variant], KSM_PRELOAD_VERBOSE: '1' };
  if (!variants[variant].LD_PRELOAD) delete env.LD_PRELOAD;
  const result = spawnSync(workload, [String(vmas), String(SECONDS)], { env, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`many_vmas ${vmas} under ${variant} failed: ${result.stderr}`);
  const [calls, p50, p99, p999, p9999, max, overMs] = result.stdout.trim().split(' ').map(Number);
  const walks = Number(/exit summary.* in (\d+) walks/.exec(result.stderr)?.[1] ?? 0);
  return { calls, p50, p99, p999, p9999, max, overMs, walks };
}

const us = (ns) => `${(ns / 1000).toFixed(1)} µs`;
const ms = (ns) => `${(ns / 1e6).toFixed(2)} ms`;
const results = {};
const rows = [];
for (const vmas of VMA_COUNTS) {
  results[vmas] = {};
  for (const variant of Object.keys(variants)) {
    const m = measure(vmas, variant);
    results[vmas][variant] = m;
    const label = `${vmas.toLocaleString('en')} VMAs, ${variant}`;
    rows.push({ figure: `malloc/free latency p99, ${label}`, value: us(m.p99), goal: '≤ 1 ms', pass: m.p99 <= 1e6 });
    rows.push({ figure: `malloc/free latency p99.99 / max, ${label}`, value: `${us(m.p9999)} / ${ms(m.max)}`, goal: 'reference' });
    rows.push({ figure: `pairs over 1 ms of ${m.calls.toLocaleString('en')}, ${label}${m.walks ? ` (${m.walks} walks)` : ''}`, value: String(m.overMs), goal: 'reference' });
  }
}

const width = Math.max(...rows.map((r) => r.figure.length));
console.log(`${'figure'.padEnd(width)}  ${'value'.padStart(20)}  ${'goal'.padEnd(9)}  result`);
for (const r of rows) {
  const result = r.pass === undefined ? '' : r.pass ? 'pass' : 'FAIL';
  console.log(`${r.figure.padEnd(width)}  ${r.value.padStart(20)}  ${r.goal.padEnd(9)}  ${result}`);
}
console.log(`\n${SECONDS} s per run, thread CPU time per pair; library: ${library}`);
writeFileSync(new URL('../out/walk-latency.json', import.meta.url), `${JSON.stringify({ at: new Date().toISOString(), library, seconds: SECONDS, results, rows }, null, 2)}\n`);
rmSync(work, { recursive: true, force: true });
process.exitCode = rows.every((r) => r.pass !== false) ? 0 : 1;
