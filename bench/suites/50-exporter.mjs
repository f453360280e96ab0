// Exporter: what one /metrics scrape of `ksm exporter` costs with 1,000 processes
// on the machine (100 madvise, 100 prctl, 800 not opted in), set against the same
// scrape with only the machine's own processes and against node_exporter's ksmd
// collector (system files only). The exporter runs as its own process, as deployed;
// times are wall-clock per HTTP request, median and 95th percentile of 30 scrapes.
// The fair-share walk runs in the background (here only once, at start) and is
// reported on its own.
//
//   node bench/suites/50-exporter.mjs [--quick]     (needs `npm run build`; root to read every process)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const quick = process.argv.includes('--quick');
const SCRAPES = quick ? 10 : 30;
const PROCESSES = { madvise: 100, prctl: 100, none: 800 };
const PAGES = 16;
const GOAL_MS = 50;
const NODE_EXPORTER = '/usr/bin/prometheus-node-exporter';

if (!existsSync(join(root, 'dist/cjs/cli/main.js'))) {
  console.log('skipped: run `npm run build` first');
  process.exit(0);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startService(command, args, url) {
  const child = spawn(command, args, { stdio: 'ignore' });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return child;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${command} did not answer at ${url}`);
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** CPU ms (user + system) a process has used: /proc/PID/stat utime + stime, 100 ticks a second. */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Median and 95th percentile of SCRAPES scrapes (after one warm-up), in wall ms; the
 * exporter's own figure; and the server's CPU ms per scrape, which the other loads
 * on a shared machine inflate far less than wall time.
 */
async function measure(url, pid) {
  await (await fetch(url)).text();
  const cpuBefore = cpuMs(pid);
  const times = [];
  let own = [];
  for (let i = 0; i < SCRAPES; i++) {
    const start = performance.now();
    const text = await (await fetch(url)).text();
    times.push(performance.now() - start);
    const match = /^ksm_exporter_scrape_duration_seconds (\S+)$/m.exec(text);
    if (match) own.push(Number(match[1]) * 1000);
  }
  const percentile = (values, p) => values.slice().sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))];
  return { median: percentile(times, 0.5), p95: percentile(times, 0.95), own: own.length ? percentile(own, 0.5) : undefined, cpu: (cpuMs(pid) - cpuBefore) / SCRAPES };
}

async function startExporter() {
  const port = await freePort();
  const child = await startService(process.execPath, [join(root, 'bin/ksm.js'), 'exporter', '--listen', `127.0.0.1:${port}`, '--fair-share', '3600'], `http://127.0.0.1:${port}/metrics`);
  return { child, url: `http://127.0.0.1:${port}/metrics` };
}

function startWorkers(binary) {
  const workers = [];
  const ready = [];
  for (const [mode, count] of Object.entries(PROCESSES)) {
    for (let i = 0; i < count; i++) {
      const child = spawn(binary, [String(mode === 'none' ? 0 : PAGES), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
      workers.push(child);
      ready.push(new Promise((resolve, reject) => {
        child.stdout.once('data', resolve);
        child.once('exit', (code) => reject(new Error(`merging-worker exited with ${code}`)));
      }));
    }
  }
  return { workers, ready: Promise.all(ready) };
}

const dir = mkdtempSync(join(tmpdir(), 'ksm-bench-exporter-'));
const rows = [];
let workers = [];
try {
  const binary = join(dir, 'merging-worker');
  execFileSync('cc', ['-O2', '-o', binary, join(root, 'test/fleet/merging-worker.c')]);

  let exporter = await startExporter();
  const idle = await measure(exporter.url, exporter.child.pid);
  await stop(exporter.child);

  const started = startWorkers(binary);
  workers = started.workers;
  await started.ready;
  exporter = await startExporter();
  const loaded = await measure(exporter.url, exporter.child.pid);
  const text = await (await fetch(exporter.url)).text();
  const processSeries = text.split('\n').filter((line) => line.startsWith('ksm_process_merging_bytes{')).length;
  const usingKsm = /^ksm_processes_using_ksm (\S+)$/m.exec(text)?.[1];
  const fairShareMs = Number(/^ksm_fair_share_duration_seconds (\S+)$/m.exec(text)?.[1]) * 1000;
  await stop(exporter.child);

  let node;
  if (existsSync(NODE_EXPORTER)) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    const child = await startService(NODE_EXPORTER, ['--collector.disable-defaults', '--collector.ksmd', `--web.listen-address=127.0.0.1:${port}`], url);
    node = await measure(url, child.pid);
    await stop(child);
  }

  const fmt = (ms) => (ms === undefined ? 'n/a' : ms.toFixed(1));
  rows.push(['ksm exporter, machine only', fmt(idle.median), fmt(idle.p95), fmt(idle.own), fmt(idle.cpu), '']);
  rows.push([`ksm exporter, +1,000 processes (${usingKsm} use KSM, ${processSeries} exported)`, fmt(loaded.median), fmt(loaded.p95), fmt(loaded.own), fmt(loaded.cpu), `CPU ${(loaded.cpu / idle.cpu).toFixed(2)}× machine only`]);
  if (node) rows.push(['node_exporter --collector.ksmd', fmt(node.median), fmt(node.p95), 'n/a', fmt(node.cpu), node.cpu > 0 ? `CPU: ksm exporter ${(loaded.cpu / node.cpu).toFixed(1)}× node_exporter` : '']);
  const width = rows.reduce((w, row) => Math.max(w, row[0].length), 0);
  console.log(`load average ${loadavg().map((load) => load.toFixed(1)).join(' ')} (wall times grow with it; CPU ms much less)\n`);
  console.log(`${'scrape'.padEnd(width)}  wall median ms  wall p95 ms  exporter's own ms  CPU ms/scrape  ratio`);
  for (const row of rows) console.log(`${row[0].padEnd(width)}  ${row[1].padStart(14)}  ${row[2].padStart(11)}  ${row[3].padStart(17)}  ${row[4].padStart(13)}  ${row[5]}`);
  mkdirSync(new URL('../out/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('../out/exporter.json', import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), loadAverage: loadavg(), processes: PROCESSES, usingKsm: Number(usingKsm), processSeries, fairShareMs, goalMs: GOAL_MS, idle, loaded, nodeExporter: node }, null, 2)}\n`,
  );
  console.log(`fair-share walk (in the background every --fair-share seconds, not per scrape): ${fmt(fairShareMs)} ms with 1,000 processes`);
  const verdict = (ms) => `${ms <= GOAL_MS ? 'met' : 'NOT met'} (${fmt(ms)} ms = ${(ms / GOAL_MS).toFixed(2)} of the goal)`;
  console.log(`\ngoal: a scrape with 1,000 processes costs ≤ ${GOAL_MS} ms: CPU per scrape ${verdict(loaded.cpu)}; wall p95 ${verdict(loaded.p95)}`);
} finally {
  for (const child of workers) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
