// Attach: what `ksm attach` costs the process it attaches to. A redis-server on
// loopback answers GETs from one closed-loop client (its own process); the same run
// is measured side by side without the helper, with the helper run and refused at
// once (the control: the same process spawning, no thread stopped), and with
// attach/detach cycles back to back (prctl, then madvise). Reported: request latency
// (median, 99th percentile, max), throughput against the control, and how long the
// injector held the thread stopped per call.
//
//   node bench/suites/70-attach.mjs [--quick]     (needs `npm run build`, root, redis-server)
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';

const root = new URL('../../', import.meta.url).pathname;
const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 10;
// What docs/attach.md claims: a prctl attach stops the thread for well under a
// millisecond, and even attach/detach back to back leaves the server half its pace.
const GOALS = { prctlAttachMedianMs: 0.5, throughputRatio: 0.5 };

if (!existsSync(`${root}dist/cjs/attach/attach.js`) || !existsSync('/usr/bin/redis-server') || process.getuid?.() !== 0) {
  console.log('skipped: needs `npm run build`, redis-server and root');
  process.exit(0);
}
const require = createRequire(import.meta.url);
const { attachProcess, detachProcess } = require(`${root}dist/cjs/attach/attach.js`);
const { attachHelper } = require(`${root}dist/cjs/core/paths.js`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

/** redis-server on a free loopback port (tries a few random ones). */
async function startRedis() {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 50 && child.exitCode === null; i++) {
      try {
        await new Promise((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket.destroy()));
          socket.once('error', reject);
        });
        return { child, port };
      } catch {
        await sleep(100);
      }
    }
    child.kill('SIGKILL');
  }
  throw new Error('redis-server did not start');
}

// The load runs in its own process, so that this one spawning helpers does not slow it.
const LOAD = `
const { connect } = require('node:net');
const [port, seconds] = process.argv.slice(1).map(Number);
const socket = connect({ host: '127.0.0.1', port }, async () => {
  const request = Buffer.from('*2\\r\\n$3\\r\\nGET\\r\\n$3\\r\\nkey\\r\\n');
  const latencies = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const started = process.hrtime.bigint();
    await new Promise((resolve) => { socket.once('data', resolve); socket.write(request); });
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  socket.destroy();
  process.stdout.write(JSON.stringify(latencies));
});
`;

/** GET after GET on one connection for SECONDS, from a child process; each latency in ms, sorted. */
function closedLoop(port) {
  return new Promise((resolve, reject) => {
    const load = spawn(process.execPath, ['-e', LOAD, String(port), String(SECONDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    load.stdout.on('data', (chunk) => (out += chunk));
    load.once('close', (code) => (code === 0 ? resolve(JSON.parse(out).sort((a, b) => a - b)) : reject(new Error(`load exited with ${code}`))));
  });
}

/** Runs the load while `step` repeats; `step` returns the stopped times of its calls. */
async function measure(port, step) {
  let running = true;
  const stopped = [];
  let cycles = 0;
  const injector = (async () => {
    await sleep(100);
    while (step && running) {
      stopped.push(...(await step(cycles)));
      cycles++;
    }
  })();
  const latencies = await closedLoop(port);
  running = false;
  await injector;
  stopped.sort((a, b) => a - b);
  return { latencies, stopped, cycles, perSecond: latencies.length / SECONDS };
}

const { child, port } = await startRedis();
try {
  const pid = child.pid;
  const baseline = await measure(port, undefined);
  // Control: the same helper runs, refused at once (its own parent), so no thread stops.
  const helper = attachHelper().path;
  const control = await measure(port, () => new Promise((resolve) => execFile(helper, ['attach', String(process.pid)], () => resolve([]))));
  const perCall = { 'attach prctl': [], 'detach prctl': [], 'attach madvise': [], 'detach madvise': [] };
  const attached = await measure(port, async (cycle) => {
    const mode = cycle % 2 === 0 ? 'prctl' : 'madvise';
    const on = await attachProcess(pid, { mode });
    const off = await detachProcess(pid, { mode });
    perCall[`attach ${mode}`].push(on.stoppedMicroseconds / 1000);
    perCall[`detach ${mode}`].push(off.stoppedMicroseconds / 1000);
    return [on.stoppedMicroseconds / 1000, off.stoppedMicroseconds / 1000];
  });
  const row = (name, r) =>
    `| ${name} | ${r.perSecond.toFixed(0)} | ${quantile(r.latencies, 0.5).toFixed(3)} | ${quantile(r.latencies, 0.99).toFixed(3)} | ${r.latencies.at(-1)?.toFixed(2)} | ${r.cycles} | ${r.stopped.length ? `${quantile(r.stopped, 0.5).toFixed(3)} / ${quantile(r.stopped, 0.99).toFixed(3)}` : '-'} |`;
  console.log(`${SECONDS} s per run, one client, GET on 127.0.0.1`);
  console.log('| run | GETs/s | p50 ms | p99 ms | max ms | cycles | thread stopped p50 / p99 ms |');
  console.log('|---|---|---|---|---|---|---|');
  console.log(row('no injection', baseline));
  console.log(row('control: helper refused at once', control));
  console.log(row('attach + detach back to back', attached));
  console.log(
    `\nthread stopped, median ms: ${Object.entries(perCall)
      .map(([call, times]) => `${call} ${quantile(times.sort((a, b) => a - b), 0.5).toFixed(3)}`)
      .join(', ')}`,
  );
  const ratio = attached.perSecond / control.perSecond;
  const prctlMedian = quantile(perCall['attach prctl'].sort((a, b) => a - b), 0.5);
  console.log(`throughput, attach/detach back to back ÷ control: ${ratio.toFixed(3)} (goal ≥ ${GOALS.throughputRatio}); without any helper ÷ control: ${(baseline.perSecond / control.perSecond).toFixed(3)}`);
  console.log(`attach with prctl, thread stopped median: ${prctlMedian.toFixed(3)} ms (goal ≤ ${GOALS.prctlAttachMedianMs} ms)`);
  process.exitCode = ratio >= GOALS.throughputRatio && prctlMedian <= GOALS.prctlAttachMedianMs ? 0 : 1;
} finally {
  child.kill('SIGKILL');
}
