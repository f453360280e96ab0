#!/usr/bin/env node
// `npm run test:kernels`: the suite's kernel-facing tests on Debian 12's 6.1 and 6.12
// kernels booted under QEMU, and on the host's kernel, as one table of test group ×
// kernel. Exits 1 on any failure; with KSM_REQUIRE_E2E=1 a guest that cannot boot (or a
// missing QEMU) is a failure too, otherwise its column is skipped with the reason.
//
//   node scripts/kernels/run.mjs [--kernels host,6.1,6.12] [--quiet]
//
// Results: build/kernels/results/<column>/ (console.log, report.json, figures.json) and
// build/kernels/summary.json, from which scripts/kernels/table.mjs --markdown prints the
// table of docs/kernels.md.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prepareKernel, SERIES, cacheRoot } from './images.mjs';
import { runInGuest, runningGuests } from './guest.mjs';
import { groupResults } from './results.mjs';
import { selectTests } from './selection.mjs';
import { formatFailures, formatTable } from './table.mjs';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const resultsRoot = join(cacheRoot, 'results');
const required = process.env.KSM_REQUIRE_E2E === '1';
/** Guests run programs at about a third of native speed under TCG. */
const GUEST_TIMEOUT_SCALE = 3;
const GUEST_TIMEOUT_MS = Number(process.env.KSM_KERNELS_GUEST_TIMEOUT_S ?? 900) * 1000;
const HARNESS_GROUP = 'harness: a guest job exiting 7 is reported as 7';

const args = process.argv.slice(2);
const quiet = args.includes('--quiet');
const kernelsArg = args.find((arg) => arg.startsWith('--kernels='))?.slice(10) ?? (args.includes('--kernels') ? args[args.indexOf('--kernels') + 1] : undefined);
const columns = (kernelsArg ?? ['host', ...SERIES.map((series) => series.name)].join(',')).split(',');
for (const column of columns) {
  if (column !== 'host' && !SERIES.some((series) => series.name === column)) {
    console.error(`test:kernels: unknown kernel ${JSON.stringify(column)}: use host or ${SERIES.map((series) => series.name).join(', ')}`);
    process.exit(2);
  }
}

const log = (text) => console.log(`test:kernels: ${text}`);
const stripEscapes = (text) => text.replace(/\x1b(\[[0-9;?]*[A-Za-z]|c|\][^\x07]*\x07)/g, '').replace(/\r/g, '');

function streamTo(prefix) {
  let pending = '';
  return (text) => {
    if (quiet) return;
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines.map(stripEscapes)) if (line.trim()) process.stdout.write(`[${prefix}] ${line}\n`);
  };
}

function vitestArgs(files) {
  return [join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'test/kernels/vitest.config.mts', ...files];
}

// Interrupted (Ctrl-C, CI's timeout): stop the guests and the host's vitest with us.
const hostRuns = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const guest of runningGuests) guest.kill('SIGKILL');
    for (const child of hostRuns) process.kill(-child.pid, 'SIGKILL'); // vitest and its workers
    process.exit(130);
  });
}

/** The selection run directly on this machine's kernel. */
function runHost(files, outDir) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const env = { ...process.env, KSM_KERNELS_REPORT: join(outDir, 'report.json'), KSM_KERNELS_FIGURES: join(outDir, 'figures.json') };
  const started = Date.now();
  const child = spawn(process.execPath, vitestArgs(files), { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  hostRuns.add(child);
  child.once('exit', () => hostRuns.delete(child));
  let output = '';
  const onOutput = streamTo('host');
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (text) => {
      output += text;
      onOutput(text);
    });
  }
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve({ status: code, console: output, seconds: (Date.now() - started) / 1000 }));
  });
}

/** The guest's job: the same selection, with E2E required and timeouts scaled for TCG. */
function guestJob(files) {
  const env = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: '/root',
    LANG: 'C.UTF-8',
    CI: '1',
    NO_COLOR: '1',
    KSM_REQUIRE_E2E: '1',
    KSM_TEST_TIME_SCALE: String(GUEST_TIMEOUT_SCALE),
    KSM_KERNELS_REPORT: '/ksm-guest-out/report.json',
    KSM_KERNELS_FIGURES: '/ksm-guest-out/figures.json',
  };
  const quote = (text) => `'${text.replaceAll("'", "'\\''")}'`;
  return [
    ...Object.entries(env).map(([name, value]) => `export ${name}=${quote(value)}`),
    `cd ${quote(repoRoot)} || exit 125`,
    `exec ${['node', ...vitestArgs(files)].map(quote).join(' ')}`,
    '',
  ].join('\n');
}

/** Boots the first guest once with a job that exits 7: the matrix must see a 7. */
async function harnessCheck(kernel) {
  const outDir = join(resultsRoot, `harness-${kernel.series}`);
  const run = await runInGuest(kernel, 'echo harness check; exit 7\n', { outDir, timeoutMs: 120_000 });
  const ok = run.status === 7;
  return {
    name: HARNESS_GROUP,
    passed: ok ? 1 : 0,
    failed: ok ? 0 : 1,
    skipped: 0,
    failures: ok ? [] : [{ test: 'harness check', message: `reported status ${run.status} (${run.reason ?? 'no reason'})\n${stripEscapes(run.console).slice(-3000)}` }],
  };
}

const qemuMissing = spawnSync('qemu-system-x86_64', ['--version']).error ? 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)' : undefined;

/** Fills a column's entry from what its run left in `outDir`. */
function record(entry, run, groups, outDir) {
  writeFileSync(join(outDir, 'console.log'), stripEscapes(run.console));
  entry.seconds = run.seconds;
  entry.status = run.status;
  const figuresFile = join(outDir, 'figures.json');
  if (existsSync(figuresFile)) entry.figures = JSON.parse(readFileSync(figuresFile, 'utf8'));
  entry.groups = groupResults(groups, join(outDir, 'report.json'), repoRoot, entry.figures?.features);
  if (entry.harness) entry.groups.push(entry.harness);
  log(`${entry.column}: done in ${run.seconds.toFixed(0)} s, exit status ${run.status}`);
}

/** The guests one after the other: each takes both cores. */
async function runGuests(entries, groups, files) {
  let harnessDone = false;
  for (const entry of entries) {
    if (qemuMissing) {
      entry.unavailable = qemuMissing;
      continue;
    }
    let kernel;
    try {
      kernel = prepareKernel(SERIES.find((series) => series.name === entry.column), (text) => log(`${entry.column}: ${text}`));
    } catch (error) {
      entry.unavailable = `no kernel image: ${error.message}`;
      continue;
    }
    Object.assign(entry, { release: kernel.release, package: kernel.package });
    if (!harnessDone) {
      log(`${entry.column}: harness check (a job exiting 7)`);
      entry.harness = await harnessCheck(kernel);
      harnessDone = true;
    }
    log(`${entry.column}: booting ${kernel.release} under QEMU (TCG)`);
    const outDir = join(resultsRoot, entry.column);
    const run = await runInGuest(kernel, guestJob(files), { outDir, timeoutMs: GUEST_TIMEOUT_MS, onConsole: streamTo(entry.column) });
    if (run.status === null) entry.unavailable = `the guest did not finish: ${run.reason}`;
    record(entry, run, groups, outDir);
  }
}

async function main() {
  const wallStarted = Date.now();
  if (!existsSync(join(repoRoot, 'dist', 'cjs', 'cli', 'main.js'))) {
    console.error('test:kernels: dist/ is missing: run `npm run build` first (npm test does)');
    return 1;
  }
  const { groups, files } = selectTests(repoRoot);
  log(`${files.length} test files in ${groups.length} groups: ${files.join(' ')}`);

  const host = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
  const summary = { date: new Date().toISOString(), host, columns: columns.map((column) => ({ column, release: host, groups: [], seconds: 0 })) };
  const hostEntry = summary.columns.find((entry) => entry.column === 'host');
  // One column at a time: a guest keeps both cores busy, and timing-bound tests on the
  // host would run slower beside it.
  if (hostEntry) {
    log('host: running the selection on this kernel');
    record(hostEntry, await runHost(files, join(resultsRoot, 'host')), groups, join(resultsRoot, 'host'));
  }
  const guestsStarted = Date.now();
  await runGuests(summary.columns.filter((entry) => entry !== hostEntry), groups, files);
  summary.guestSeconds = (Date.now() - guestsStarted) / 1000;
  summary.seconds = (Date.now() - wallStarted) / 1000;
  writeFileSync(join(cacheRoot, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);

  console.log(`\n${formatTable(summary)}`);
  const failures = formatFailures(summary, resultsRoot);
  if (failures) console.log(`\n${failures}`);
  const failed = summary.columns.some((entry) => entry.groups.some((group) => group.failed > 0) || (entry.unavailable && (required || entry.groups.length > 0)));
  console.log(`\n${failed ? 'FAILED' : 'passed'} in ${summary.seconds.toFixed(0)} s (guests ${summary.guestSeconds.toFixed(0)} s); consoles and reports: ${resultsRoot}/<kernel>/`);
  return failed ? 1 : 0;
}

main().then(
  (code) => (process.exitCode = code),
  (error) => {
    console.error(`test:kernels: ${error.stack ?? error}`);
    process.exitCode = 1;
  },
);
