// The Node API's overhead: markMergeable() on a 1 MiB Buffer against the bare
// madvise(2) it wraps, timed from C in the same run (goal: ≤ 1.5×), and
// allocMergeable(1 MiB) against Buffer.allocUnsafe(1 MiB).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const { markMergeable } = require('../../dist/cjs/marking/mark.js');
const { allocMergeable } = require('../../dist/cjs/marking/alloc.js');
const { loadNative } = require('../../dist/cjs/core/addon.js');

const MARK_ROUNDS = 15;
const ALLOC_ROUNDS = 5;
const MARK_CALLS = 50_000;
const ALLOC_CALLS = 2_000;
const MIB = 1 << 20;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function compileBaseline(dir) {
  const binary = join(dir, 'madvise-baseline');
  execFileSync('cc', ['-O2', '-o', binary, new URL('./20-api-madvise.c', import.meta.url).pathname]);
  return binary;
}

function cMadviseNs(binary) {
  return Number(execFileSync(binary, [String(MARK_CALLS)], { encoding: 'utf8' }));
}

function markMergeableNs(data) {
  const begin = process.hrtime.bigint();
  for (let i = 0; i < MARK_CALLS; i++) markMergeable(data);
  return Number(process.hrtime.bigint() - begin) / MARK_CALLS;
}

/** The addon's bare madvise on the same range: the floor under markMergeable(). */
function addonMadviseNs(range) {
  const { addon } = loadNative();
  const begin = process.hrtime.bigint();
  for (let i = 0; i < MARK_CALLS; i++) addon.madvise(range.start, range.end - range.start, true);
  return Number(process.hrtime.bigint() - begin) / MARK_CALLS;
}

/** Per-call cost of allocating (and, amortised, releasing) 1 MiB buffers. */
async function allocNs(allocate, touch) {
  gc();
  await yieldToLoop();
  const begin = process.hrtime.bigint();
  for (let i = 0; i < ALLOC_CALLS; i++) {
    const buffer = allocate(MIB);
    if (touch) buffer.fill(1);
    // Lets finalizers run, so released mappings are part of the cost.
    if (i % 50 === 49) await yieldToLoop();
  }
  gc();
  await yieldToLoop();
  return Number(process.hrtime.bigint() - begin) / ALLOC_CALLS;
}

const dir = mkdtempSync(join(tmpdir(), 'ksm-bench-api-'));
try {
  const baseline = compileBaseline(dir);
  const data = Buffer.alloc(MIB, 1);
  const advised = markMergeable(data);
  if (!advised.supported) throw new Error(`markMergeable is not supported here: ${advised.reason}`);
  markMergeableNs(data); // warm up the JIT

  const samples = { mark: [], madvise: [], addonMadvise: [], allocMergeable: [], allocUnsafe: [], allocMergeableTouched: [], allocUnsafeTouched: [] };
  // Interleaved, so machine noise hits both sides alike; allocation churn comes after.
  for (let round = 0; round < MARK_ROUNDS; round++) {
    samples.madvise.push(cMadviseNs(baseline));
    samples.mark.push(markMergeableNs(data));
    samples.addonMadvise.push(addonMadviseNs(advised.range));
  }
  for (let round = 0; round < ALLOC_ROUNDS; round++) {
    samples.allocUnsafe.push(await allocNs((size) => Buffer.allocUnsafe(size), false));
    samples.allocMergeable.push(await allocNs((size) => allocMergeable(size), false));
    samples.allocUnsafeTouched.push(await allocNs((size) => Buffer.allocUnsafe(size), true));
    samples.allocMergeableTouched.push(await allocNs((size) => allocMergeable(size), true));
  }

  const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
  const results = {
    markRounds: MARK_ROUNDS,
    allocRounds: ALLOC_ROUNDS,
    advisedPages: advised.advisedPages,
    markMergeable1MiB: { markMergeableNs: m.mark, cMadviseNs: m.madvise, addonMadviseNs: m.addonMadvise, ratio: m.mark / m.madvise, goal: 1.5 },
    allocMergeable1MiB: { allocMergeableNs: m.allocMergeable, allocUnsafeNs: m.allocUnsafe, ratio: m.allocMergeable / m.allocUnsafe },
    allocMergeable1MiBTouched: {
      allocMergeableNs: m.allocMergeableTouched,
      allocUnsafeNs: m.allocUnsafeTouched,
      ratio: m.allocMergeableTouched / m.allocUnsafeTouched,
    },
  };
  const row = (what, ours, base, baseName, ratio, goal) =>
    `| ${what} | ${ours.toFixed(0)} ns | ${base.toFixed(0)} ns (${baseName}) | ${ratio.toFixed(2)}× | ${goal} |`;
  console.log(`per call, median of ${MARK_ROUNDS} (marking) and ${ALLOC_ROUNDS} (allocation) interleaved rounds\n`);
  console.log('| operation | ksm-preload | baseline | ratio | goal |');
  console.log('|---|---|---|---|---|');
  console.log(row(`markMergeable(1 MiB Buffer), ${advised.advisedPages} pages`, m.mark, m.madvise, 'madvise from C', results.markMergeable1MiB.ratio, results.markMergeable1MiB.ratio <= 1.5 ? '≤ 1.5× ✓' : '≤ 1.5× ✗'));
  console.log(row('the addon\'s bare madvise (the floor)', m.addonMadvise, m.madvise, 'madvise from C', m.addonMadvise / m.madvise, 'report'));
  console.log(row('allocMergeable(1 MiB)', m.allocMergeable, m.allocUnsafe, 'Buffer.allocUnsafe', results.allocMergeable1MiB.ratio, 'report'));
  console.log(row('allocMergeable(1 MiB) + fill', m.allocMergeableTouched, m.allocUnsafeTouched, 'Buffer.allocUnsafe + fill', results.allocMergeable1MiBTouched.ratio, 'report'));
  writeFileSync(new URL('../out/api.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
