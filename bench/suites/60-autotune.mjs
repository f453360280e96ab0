// Autotune against the other ways of pacing ksmd, on one workload whose identical
// processes arrive over time: 8 demo workers (32 MiB of seeded data each, opted in
// with prctl through ksm-exec), a new one every 30 s. Each variant runs for 10
// minutes from nothing merged:
//   - kernel defaults: run=1, pages_to_scan=100, sleep_millisecs=20;
//   - ksmtuned: its published loop, reimplemented here from its documented defaults
//     (every 60 s: boost pages_to_scan by 300 while free memory is below the
//     threshold, else decay by 50, within 64..1250; sleep = 10 ms × 16 GiB ÷ MemTotal);
//   - the kernel's advisor: advisor_mode=scan-time with its defaults (200 s per scan,
//     at most 70 % CPU);
//   - autotune: `ksm autotune` with its defaults.
// Memory is plentiful on the bench machine, which would keep ksmtuned and autotune
// from running ksmd at all; both get their threshold at 100 % of MemTotal
// (ksmtuned's KSM_THRES_COEF=100, autotune's --threshold-percent 100), so memory
// counts as short for everybody and the comparison is about pacing.
//
// Measured per variant: seconds until the workers' merged bytes (pagemap PFNs,
// exact, the workers only) reach 90 % of the ideal (page hashing over the final
// 8 workers, analyzeMemory's ideal among advised pages), and ksmd's CPU-seconds
// over the run (utime + stime of the ksmd thread). The machine-wide KSM lock of
// the tests is taken per variant and released between them, so tests can run in
// the gaps.
//
//   node bench/suites/60-autotune.mjs [--minutes N] [--only NAME,...]
//   (needs root, KSM and `npm run build`; --minutes shortens every time scale alike)
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { acquireKsmdLock, releaseKsmdLock } from '../ksmd-lock.mjs';

const require = createRequire(import.meta.url);
const checkout = new URL('../../', import.meta.url).pathname;
/**
 * The run lasts 40 minutes in a tree others rebuild: workers and autotune start from
 * a private copy of the built package, so a concurrent `npm run build` cannot pull
 * dist/ from under them.
 */
const root = `/tmp/ksm-bench-autotune-pkg-${process.pid}/`;
// A build under way removes dist/ first: wait for it to finish.
for (let waited = 0; !existsSync(join(checkout, 'dist/cjs/index.js')) || !existsSync(join(checkout, 'dist/cjs/fleet/autotune.js')); waited++) {
  if (waited === 120) throw new Error('dist/ is missing: run `npm run build` first');
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
for (const part of ['package.json', 'binding.gyp', 'bin', 'dist', 'scripts', 'build/Release', 'build/ksm-build-status.json', 'prebuilds']) {
  if (existsSync(join(checkout, part))) cpSync(join(checkout, part), join(root, part), { recursive: true });
}
symlinkSync(join(checkout, 'node_modules'), join(root, 'node_modules'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const ksm = require(`${root}dist/cjs/index.js`);
const { measureMergedBytes } = require(`${root}dist/cjs/analysis/analyze.js`);
const { ksmdCpuSeconds } = require(`${root}dist/cjs/fleet/ksmd-cpu.js`);
const { MergeableCensus } = require(`${root}dist/cjs/fleet/autotune-sample.js`);

const argValue = (flag) => {
  const index = process.argv.indexOf(flag);
  return index < 0 ? undefined : process.argv[index + 1];
};
const MINUTES = Number(argValue('--minutes') ?? 10);
const ONLY = argValue('--only')?.split(',');
/** Every time scale of the workload and of ksmtuned shrinks with --minutes alike. */
const SCALE = MINUTES / 10;
const WORKERS = 8;
const WORKER_MIB = 32;
const ARRIVAL_SECONDS = 30 * SCALE;
const SAMPLE_MS = 2000;
const MiB = 2 ** 20;

/** The knobs as a freshly booted 6.x kernel has them. */
const KERNEL_DEFAULTS = { run: 0, pages_to_scan: 100, sleep_millisecs: 20, use_zero_pages: 0, smart_scan: 1, advisor_mode: 'none', advisor_max_cpu: 70, advisor_target_scan_time: 200, advisor_min_pages_to_scan: 500, advisor_max_pages_to_scan: 30000 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- the lock of test/helpers/ksmd.ts, so tests and this suite never share ksmd ---
// Tests take the lock for seconds at a time, many in a row: this waits longer than they
// do and looks more often, or a busy machine would starve it.
// --- the baselines that pace ksmd from here ---
function meminfoKb() {
  const text = readFileSync('/proc/meminfo', 'utf8');
  return (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

/** Resident kB of the processes ksmtuned would count as committed (it counts its VMs; here, the workers). */
function committedKb(pids) {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return sum;
}

/** ksmtuned's adjust(): decides from free memory against the threshold, every KSM_MONITOR_INTERVAL. */
function ksmtuned(workerPids) {
  const config = { monitorSeconds: 60 * SCALE, thresCoef: 100, thresConstMiB: 2048, boost: 300, decay: -50, min: 64, max: 1250, sleepMsec: 10 };
  let npages = Number(ksm.saveKnobs().pages_to_scan ?? 100);
  let timer;
  const adjust = () => {
    const kb = meminfoKb();
    const total = kb('MemTotal');
    const free = kb('MemFree') + kb('Buffers') + kb('Cached');
    const thres = Math.max((total * config.thresCoef) / 100, config.thresConstMiB * 1024);
    const committed = committedKb(workerPids());
    if (committed + thres < total && free > thres) {
      ksm.applyKnobs({ run: 0 });
      return;
    }
    npages = Math.min(config.max, Math.max(config.min, npages + (free < thres ? config.boost : config.decay)));
    const sleepMs = Math.max(10, Math.round((config.sleepMsec * 16 * 1024 * 1024) / total));
    ksm.applyKnobs({ pages_to_scan: npages, sleep_millisecs: sleepMs, run: 1 });
  };
  adjust();
  timer = setInterval(adjust, config.monitorSeconds * 1000);
  return { stop: async () => clearInterval(timer), cpuSeconds: () => 0 };
}

function fixedKnobs(knobs) {
  return () => {
    ksm.applyKnobs(knobs);
    return { stop: async () => {}, cpuSeconds: () => 0 };
  };
}

/** CPU-seconds of a process of ours, from its /proc stat. */
function processCpuSeconds(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

function autotune() {
  const state = `/tmp/ksm-bench-autotune-${process.pid}.jsonl`;
  const child = spawn(process.execPath, [`${root}bin/ksm.js`, 'autotune', '--threshold-percent', '100', '--state', state], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  child.stdout.on('data', (chunk) => lines.push(...String(chunk).split('\n').filter(Boolean)));
  let lastCpu = 0;
  const cpuTimer = setInterval(() => (lastCpu = processCpuSeconds(child.pid) ?? lastCpu), 1000);
  return {
    stop: async () => {
      lastCpu = processCpuSeconds(child.pid) ?? lastCpu;
      clearInterval(cpuTimer);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(state, { force: true });
      console.error(`  autotune logged ${lines.length} decisions; last: ${lines.at(-2) ?? ''}`);
      if (process.env.KSM_BENCH_VERBOSE) console.error(lines.join('\n'));
    },
    cpuSeconds: () => lastCpu,
    decisions: () => lines,
  };
}

const VARIANTS = [
  { name: 'autotune', start: autotune },
  { name: 'kernel defaults', start: fixedKnobs({ run: 1 }) },
  { name: 'ksmtuned', start: ksmtuned },
  { name: 'kernel advisor', start: fixedKnobs({ advisor_mode: 'scan-time', run: 1 }) },
];

const PAGE = ksm.systemKsmStats().pageSize;

/** Resident anonymous pages of the workers (statm resident − shared); the launcher execs, so the pids are theirs. */
function workerPages(pids) {
  let pages = 0;
  for (const pid of pids) {
    try {
      const [, resident, shared] = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ').map(Number);
      pages += resident - shared;
    } catch {
      // gone
    }
  }
  return pages;
}

// --- the workload ---
function startWorker() {
  const exec = ksm.launcher().path;
  const child = spawn(exec, ['--mode', 'prctl', '--', process.execPath, `${root}dist/cjs/analysis/demo-worker.js`, String(WORKER_MIB), '42'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return child;
}

async function stopAll(children) {
  await Promise.all(
    children.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', resolve);
          child.kill('SIGKILL');
        }),
    ),
  );
}

async function runVariant(variant) {
  await acquireKsmdLock({ waitMinutes: 30 });
  const snapshot = ksm.saveKnobs();
  const workers = [];
  let controller;
  try {
    // Nothing merged and the kernel's defaults, whatever the last user left.
    ksm.applyKnobs({ run: 2 });
    ksm.applyKnobs(KERNEL_DEFAULTS);
    const started = Date.now();
    const cpuAtStart = ksmdCpuSeconds();
    const pids = () => workers.map((child) => child.pid);
    workers.push(startWorker());
    controller = variant.start(pids);
    const samples = [];
    // ksmd scans every process that opted in: other people's count in its CPU time.
    const census = new MergeableCensus();
    const othersBytes = [];
    const end = started + MINUTES * 60_000;
    while (Date.now() < end) {
      const elapsed = (Date.now() - started) / 1000;
      while (workers.length < WORKERS && elapsed >= workers.length * ARRIVAL_SECONDS) workers.push(startWorker());
      if (samples.length % 5 === 0) othersBytes.push((census.count(PAGE, Date.now(), 0).mergeablePages - workerPages(pids())) * PAGE);
      samples.push({ seconds: elapsed, mergedBytes: (await measureMergedBytes(pids())) ?? 0, ksmdCpuSeconds: ksmdCpuSeconds() - cpuAtStart });
      await sleep(Math.max(0, SAMPLE_MS - ((Date.now() - started) % SAMPLE_MS)));
    }
    const ksmdCpu = ksmdCpuSeconds() - cpuAtStart;
    const controllerCpu = controller.cpuSeconds();
    const decisions = controller.decisions?.();
    await controller.stop();
    controller = undefined;
    const analysis = await ksm.analyzeMemory(pids());
    const ideal = analysis.idealAdvisedBytes;
    const reached = samples.find((sample) => sample.mergedBytes >= 0.9 * ideal);
    const last = samples.at(-1);
    return {
      variant: variant.name,
      idealBytes: ideal,
      finalMergedBytes: last?.mergedBytes ?? 0,
      secondsTo90: reached?.seconds,
      ksmdCpuSeconds: ksmdCpu,
      ksmdCpuAt90: reached?.ksmdCpuSeconds,
      controllerCpuSeconds: controllerCpu,
      othersMergeableBytes: othersBytes.reduce((sum, bytes) => sum + bytes, 0) / Math.max(1, othersBytes.length),
      samples,
      // autotune's log lines, one per decision: where its CPU went.
      decisions,
    };
  } finally {
    await controller?.stop();
    await stopAll(workers);
    ksm.applyKnobs({ run: 2 });
    ksm.restoreKnobs(snapshot);
    releaseKsmdLock();
  }
}

const fmt = (x, digits = 1) => (x === undefined ? 'never' : x.toFixed(digits));

function verdicts(results) {
  const tuned = results.find((r) => r.variant === 'autotune');
  const others = results.filter((r) => r !== tuned);
  if (!tuned || others.length === 0) return [];
  const reachedOthers = others.filter((r) => r.secondsTo90 !== undefined);
  const fastest = reachedOthers.length ? Math.min(...reachedOthers.map((r) => r.secondsTo90)) : undefined;
  const cheapest = reachedOthers.length ? Math.min(...reachedOthers.map((r) => r.ksmdCpuSeconds)) : undefined;
  return [
    {
      goal: 'autotune reaches 90 % of the ideal no later than the fastest other',
      measured: `autotune ${fmt(tuned.secondsTo90)} s, fastest other ${fmt(fastest)} s`,
      pass: tuned.secondsTo90 !== undefined && (fastest === undefined || tuned.secondsTo90 <= fastest),
    },
    {
      goal: 'autotune spends no more ksmd CPU than the cheapest other that reaches 90 %',
      measured: `autotune ${fmt(tuned.ksmdCpuSeconds, 2)} CPU-s, cheapest other ${fmt(cheapest, 2)} CPU-s`,
      pass: cheapest === undefined || tuned.ksmdCpuSeconds <= cheapest,
    },
  ];
}

async function main() {
  if (process.getuid?.() !== 0 || !existsSync('/sys/kernel/mm/ksm/run')) {
    console.log('skipped: the autotune benchmark needs root and a kernel with KSM');
    return;
  }
  if (!ksm.launcher().path) throw new Error(ksm.launcher().reason);
  if (!Number.isFinite(MINUTES) || MINUTES <= 0) throw new Error(`--minutes needs a positive number, got ${argValue('--minutes')}`);
  const variants = VARIANTS.filter((variant) => !ONLY || ONLY.some((name) => variant.name.includes(name)));
  console.log(`${WORKERS} demo workers of ${WORKER_MIB} MiB (prctl), one every ${ARRIVAL_SECONDS} s; ${MINUTES} min per variant\n`);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()} ${arch()}, Node ${process.version}`;
  const save = (goals) => {
    mkdirSync(new URL('../out/', import.meta.url), { recursive: true });
    writeFileSync(new URL('../out/autotune.json', import.meta.url), `${JSON.stringify({ date: new Date().toISOString(), machine, minutes: MINUTES, workers: WORKERS, results, goals }, null, 2)}\n`);
  };
  const results = [];
  for (const variant of variants) {
    const result = await runVariant(variant);
    results.push(result);
    // Kept after each variant: a run cut short still leaves what it measured.
    save([]);
    console.error(`${variant.name}: 90 % after ${fmt(result.secondsTo90)} s, ksmd ${fmt(result.ksmdCpuSeconds, 2)} CPU-s`);
  }
  const header = ['variant', 'ideal MiB', 'merged MiB at end', 'time to 90 % (s)', `ksmd CPU-s over ${MINUTES} min`, 'ksmd CPU-s until 90 %', 'controller CPU-s', "others' mergeable MiB"];
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
  for (const r of results) {
    console.log(`| ${[r.variant, fmt(r.idealBytes / MiB), fmt(r.finalMergedBytes / MiB), fmt(r.secondsTo90), fmt(r.ksmdCpuSeconds, 2), fmt(r.ksmdCpuAt90, 2), fmt(r.controllerCpuSeconds, 2), fmt(r.othersMergeableBytes / MiB, 0)].join(' | ')} |`);
  }
  const goals = verdicts(results);
  if (goals.length) {
    console.log('\n| goal | measured | result |\n|---|---|---|');
    for (const g of goals) console.log(`| ${g.goal} | ${g.measured} | ${g.pass ? 'pass' : 'FAIL'} |`);
  }
  save(goals);
  if (!goals.every((g) => g.pass)) process.exitCode = 1;
}

await main();
