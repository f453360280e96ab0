// Savings: for each workload and mode (no library, madvise, prctl), N identical
// processes are started, `analyzeMemory` predicts the ideal saving, ksmd runs fast
// until the saving settles, and what it merged (pages_sharing grown) is set against
// the ideal. Holds the machine-wide KSM lock the tests use, restores every knob.
//
// "merged" is what the workload's own processes save: their pages mapped to KSM
// pages minus the distinct KSM pages (from pagemap PFNs and /proc/kpageflags, no
// hashing involved). pages_sharing grown during the run is printed next to it: it
// also counts other processes on the machine that ksmd merged at the same time.
//
//   node bench/suites/30-savings.mjs [--quick]     (needs root, KSM and `npm run build`)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, release, totalmem } from 'node:os';
import { memcached, redis, waitListening } from '../workloads/servers.mjs';
import { acquireKsmdLock, releaseKsmdLock } from '../ksmd-lock.mjs';

const require = createRequire(import.meta.url);
const root = new URL('../../', import.meta.url).pathname;
const ksm = require(`${root}dist/cjs/index.js`);
const idle = require(`${root}dist/cjs/process/idle.js`);

const COPIES = 4;
const MODES = ['none', 'madvise', 'prctl'];
const SETTLE_TIMEOUT_MS = 60_000;
const STABLE_FULL_SCANS = 3;
const FAST_KNOBS = { pages_to_scan: 5000, sleep_millisecs: 10 };
const GOALS = { mergedOverIdeal: 0.95, analyzeBytesPerSecond: 2 ** 30, predictionLow: 0.95, predictionHigh: 1.05 };
const MiB = 2 ** 20;

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const WORKLOADS = [
  {
    name: 'node demo workers',
    command: () => [process.execPath, `${root}dist/cjs/analysis/demo-worker.js`, '32', '42'],
    ready: 'stdout',
  },
  {
    name: 'python3 dict + bytearrays',
    command: () => [python, `${root}bench/workloads/python-worker.py`, '48'],
    ready: 'stdout',
  },
  { name: redis.name, command: redis.command, ready: 'port', load: redis.load },
  { name: memcached.name, command: memcached.command, ready: 'port', load: memcached.load },
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- processes ---
function startCopy(workload, mode, index) {
  const port = 20000 + (process.pid % 5000) + index;
  const command = workload.command(port);
  const exec = ksm.launcher().path;
  const argv = mode === 'none' ? command : [exec, '--mode', mode, '--', ...command];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const ready =
    workload.ready === 'stdout'
      ? new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${workload.name} was not ready in 60 s`)), 60_000);
          child.stdout.on('data', (chunk) => {
            if (String(chunk).includes('ready')) {
              clearTimeout(timer);
              resolve();
            }
          });
          child.once('exit', (code) => reject(new Error(`${workload.name} exited with ${code}`)));
        })
      : waitListening(port).then(() => workload.load(port));
  child.stdout.resume();
  return { child, ready };
}

async function stopAll(copies) {
  await Promise.all(
    copies.map(
      ({ child }) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', resolve);
          child.kill('SIGKILL');
        }),
    ),
  );
}

// --- ksmd ---
const counters = () => {
  const { counters: c } = ksm.systemKsmStats();
  return { sharing: c.pages_sharing ?? 0, fullScans: c.full_scans ?? 0 };
};

/** Pages of these processes mapped to KSM pages, summed. */
const mergingPages = (pids) => pids.reduce((sum, pid) => sum + (ksm.processKsmStats(pid, { coverage: false }).mergingPages ?? 0), 0);

/**
 * Runs ksmd until the processes' merged pages stop growing for a few full scans
 * (their own count, so that other processes merging meanwhile do not matter), or
 * the timeout.
 */
async function settle(pids) {
  const started = Date.now();
  ksm.applyKnobs({ ...FAST_KNOBS, run: 1 });
  let merging = mergingPages(pids);
  let scansAtGrowth = counters().fullScans;
  while (Date.now() - started < SETTLE_TIMEOUT_MS) {
    await sleep(250);
    const now = mergingPages(pids);
    const { fullScans } = counters();
    if (now > merging) scansAtGrowth = fullScans;
    merging = now;
    if (now > 0 && fullScans - scansAtGrowth >= STABLE_FULL_SCANS) break;
  }
  return (Date.now() - started) / 1000;
}

/** Unmerges everything and stops ksmd, so each run starts from nothing merged. */
function resetKsmd() {
  ksm.applyKnobs({ run: 2 });
  ksm.applyKnobs({ run: 0 });
}

/** Analyses three times; keeps the run with the median rate (the machine is shared, single runs are noisy). */
async function analyzeTimed(pids) {
  const runs = [];
  for (let i = 0; i < 3; i++) {
    const started = process.hrtime.bigint();
    const analysis = await ksm.analyzeMemory(pids);
    runs.push({ analysis, endToEndSeconds: Number(process.hrtime.bigint() - started) / 1e9 });
  }
  runs.sort((a, b) => a.analysis.bytesPerSecond - b.analysis.bytesPerSecond);
  return runs[1];
}

async function measure(workload, mode) {
  resetKsmd();
  const copies = Array.from({ length: COPIES }, (_, i) => startCopy(workload, mode, i));
  try {
    await Promise.all(copies.map((copy) => copy.ready));
    const pids = copies.map(({ child }) => child.pid);
    await idle.waitUntilIdle(pids, { timeoutMs: 10_000 });
    const { analysis: before, endToEndSeconds } = await analyzeTimed(pids);
    const page = before.pageSize;
    const baseline = counters().sharing;
    const settleSeconds = before.advisedBytes === 0 ? 0 : await settle(pids);
    const pagesSharingDeltaBytes = (counters().sharing - baseline) * page;
    const after = await ksm.analyzeMemory(pids);
    const mergedBytes = after.mergedBytes;
    const perProcessMerging = pids.map((pid) => ksm.processKsmStats(pid, { coverage: false }).mergingBytes ?? 0);
    return {
      workload: workload.name,
      mode,
      processes: COPIES,
      residentAnonymousBytes: before.residentAnonymousBytes,
      coverage: before.coverage,
      idealBytes: before.ideal.bytes,
      idealAdvisedBytes: before.idealAdvisedBytes,
      mergedBytes,
      pagesSharingDeltaBytes,
      perProcessMergingBytes: perProcessMerging,
      mergedOverIdeal: before.ideal.bytes > 0 ? mergedBytes / before.ideal.bytes : 0,
      predictionOverActual: mergedBytes > 0 ? before.idealAdvisedBytes / mergedBytes : undefined,
      analyzeBytesPerSecond: before.bytesPerSecond,
      analyzeEndToEndBytesPerSecond: before.residentAnonymousBytes / endToEndSeconds,
      analyzeAfterMergeBytesPerSecond: after.bytesPerSecond,
      settleSeconds,
    };
  } finally {
    await stopAll(copies);
  }
}

// --- report ---
const pct = (x) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(1)} %`);
const mib = (x) => (x === undefined ? 'n/a' : (x / MiB).toFixed(1));

function verdicts(results) {
  const marked = results.filter((r) => r.mode !== 'none');
  const fullyAdvised = results.filter((r) => r.mode !== 'none' && r.coverage >= 0.99);
  const minRate = Math.min(...results.map((r) => r.analyzeBytesPerSecond));
  return [
    {
      goal: `merged ÷ ideal ≥ ${pct(GOALS.mergedOverIdeal)}, madvise and prctl, every workload`,
      measured: marked.map((r) => `${r.workload}/${r.mode} ${pct(r.mergedOverIdeal)}`).join('; '),
      pass: marked.every((r) => r.mergedOverIdeal >= GOALS.mergedOverIdeal),
    },
    {
      goal: 'analyze rate ≥ 1 GiB/s',
      measured: `min ${(minRate / 2 ** 30).toFixed(2)} GiB/s`,
      pass: minRate >= GOALS.analyzeBytesPerSecond,
    },
    {
      goal: `prediction ÷ actual within ${GOALS.predictionLow}–${GOALS.predictionHigh}, fully advised (coverage ≥ 99 %)`,
      measured: fullyAdvised.map((r) => `${r.workload}/${r.mode} ${r.predictionOverActual?.toFixed(3) ?? 'n/a'}`).join('; ') || 'none fully advised',
      pass: fullyAdvised.length > 0 && fullyAdvised.every((r) => r.predictionOverActual >= GOALS.predictionLow && r.predictionOverActual <= GOALS.predictionHigh),
    },
  ];
}

function printTable(results) {
  const header = ['workload', 'mode', 'anon MiB', 'coverage', 'ideal MiB', 'ideal adv. MiB', 'merged MiB', 'Δpages_sharing MiB', 'merged/ideal', 'pred/actual', 'analyze GiB/s', 'settle s'];
  const rows = results.map((r) => [
    r.workload,
    r.mode,
    mib(r.residentAnonymousBytes),
    pct(r.coverage),
    mib(r.idealBytes),
    mib(r.idealAdvisedBytes),
    mib(r.mergedBytes),
    mib(r.pagesSharingDeltaBytes),
    pct(r.mergedOverIdeal),
    r.predictionOverActual?.toFixed(3) ?? 'n/a',
    (r.analyzeBytesPerSecond / 2 ** 30).toFixed(2),
    r.settleSeconds.toFixed(1),
  ]);
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

async function main() {
  if (process.getuid?.() !== 0 || !existsSync('/sys/kernel/mm/ksm/run')) {
    console.log('skipped: the savings benchmark needs root and a kernel with KSM');
    return;
  }
  if (!ksm.launcher().path) throw new Error(`${ksm.launcher().reason}`);
  const workloads = process.argv.includes('--quick') ? WORKLOADS.slice(0, 1) : WORKLOADS;
  await acquireKsmdLock();
  const snapshot = ksm.saveKnobs();
  const results = [];
  try {
    if (snapshot.advisor_mode === 'scan-time') ksm.applyKnobs({ advisor_mode: 'none' });
    for (const workload of workloads) {
      for (const mode of MODES) {
        const result = await measure(workload, mode);
        results.push(result);
        console.error(`${result.workload} / ${mode}: ideal ${mib(result.idealBytes)} MiB, merged ${mib(result.mergedBytes)} MiB (${pct(result.mergedOverIdeal)})`);
      }
    }
  } finally {
    ksm.applyKnobs({ run: 2 });
    ksm.restoreKnobs(snapshot);
    releaseKsmdLock();
  }
  printTable(results);
  const goals = verdicts(results);
  console.log('\n| goal | measured | result |\n|---|---|---|');
  for (const g of goals) console.log(`| ${g.goal} | ${g.measured} | ${g.pass ? 'pass' : 'FAIL'} |`);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()} ${arch()}, Node ${process.version}`;
  mkdirSync(new URL('../out/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('../out/savings.json', import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), machine, copies: COPIES, results, goals }, null, 2)}\n`,
  );
  if (!goals.every((g) => g.pass)) process.exitCode = 1;
}

await main();
