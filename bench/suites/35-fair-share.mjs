// Fair share at exporter scale: 1,000 processes, some of which share merged pages.
// Times fairShareSaved() (pagemap, kpageflags, kpagecount) against reading only the
// kernel's figures (ksm_stat of every process), and ksmProcesses(), which `ksm top`
// and the exporter call, with and without the fair share. Checks the fair-share
// total against the saving the holders' layout implies.
//
//   node bench/suites/35-fair-share.mjs [--processes N] [--holders N]   (needs root, KSM, `npm run build`)
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, release, totalmem } from 'node:os';
import { acquireKsmdLock, releaseKsmdLock } from '../ksmd-lock.mjs';

const require = createRequire(import.meta.url);
const root = new URL('../../', import.meta.url).pathname;
const ksm = require(`${root}dist/cjs/index.js`);
const top = require(`${root}dist/cjs/process/top.js`);

const option = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : Number(process.argv[at + 1]);
};
const PROCESSES = option('processes', 1000);
const HOLDERS = option('holders', 40);
const HOLDER_PAGES = 2048; // 8 MiB each, the same content in every holder
const ROUNDS = 5;
const MiB = 2 ** 20;

const HOLDER = `
import mmap, sys, time
pages = int(sys.argv[1])
region = mmap.mmap(-1, pages * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(pages):
    region[i * 4096:(i + 1) * 4096] = ((b'fair-share bench %08d ' % i) * 158)[:4096]
region.madvise(mmap.MADV_MERGEABLE)
print('ready', flush=True)
time.sleep(3600)
`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startHolder() {
  const child = spawn('/usr/bin/python3', ['-c', HOLDER, String(HOLDER_PAGES)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => chunk.toString().includes('ready') && resolve(child));
    child.on('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
}

function mergingPages(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8'));
  } catch {
    return 0;
  }
}

/** Fastest of ROUNDS runs, in milliseconds (the machine is shared: the fastest is the least disturbed). */
function fastest(fn) {
  let best = Infinity;
  let result;
  for (let i = 0; i < ROUNDS; i++) {
    const started = process.hrtime.bigint();
    result = fn();
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6);
  }
  return { ms: best, result };
}

function kernelFiguresOnly(pids) {
  let profit = 0;
  for (const pid of pids) {
    try {
      profit += Number(/^ksm_process_profit (-?\d+)$/m.exec(readFileSync(`/proc/${pid}/ksm_stat`, 'latin1'))?.[1] ?? 0);
    } catch {
      // exited
    }
  }
  return profit;
}

async function main() {
  if (process.getuid?.() !== 0) {
    console.log('skipped: fair share needs root (pagemap frame numbers, /proc/kpagecount)');
    return;
  }
  const holders = [];
  const idle = [];
  await acquireKsmdLock();
  const snapshot = ksm.saveKnobs();
  try {
    for (let i = 0; i < HOLDERS; i++) holders.push(await startHolder());
    for (let i = holders.length; i < PROCESSES; i++) idle.push(spawn('sleep', ['3600'], { stdio: 'ignore' }));
    const holderPids = holders.map((child) => child.pid);
    const pids = [...holderPids, ...idle.map((child) => child.pid)];
    // pages_to_scan is refused while the kernel's advisor tunes it.
    if (existsSync('/sys/kernel/mm/ksm/advisor_mode')) ksm.applyKnobs({ advisor_mode: 'none' });
    ksm.applyKnobs({ pages_to_scan: 20000, sleep_millisecs: 1, run: 1 });
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline && !holderPids.every((pid) => mergingPages(pid) === HOLDER_PAGES)) await sleep(250);
    const merged = holderPids.reduce((sum, pid) => sum + mergingPages(pid), 0);
    ksm.applyKnobs({ run: 0 }); // keep what merged, stop changing it while timing

    const kernel = fastest(() => kernelFiguresOnly(pids));
    const fair = fastest(() => ksm.fairShareSaved(pids));
    const list = fastest(() => top.ksmProcesses(pids));
    const expectedSaved = (HOLDERS - 1) * HOLDER_PAGES * 4096;
    const fairTotal = fair.result.available ? fair.result.totalSavedBytes : NaN;
    const rows = [
      ['processes (merging)', `${PROCESSES} (${HOLDERS})`],
      ['merged pages of the holders', `${merged} of ${HOLDERS * HOLDER_PAGES}`],
      ['fair-share total', `${(fairTotal / MiB).toFixed(1)} MiB (layout implies ${(expectedSaved / MiB).toFixed(1)} MiB, ${((fairTotal / expectedSaved) * 100).toFixed(2)} %)`],
      ["kernel's summed profit", `${(kernel.result / MiB).toFixed(1)} MiB`],
      ['ksm_stat of every process', `${kernel.ms.toFixed(1)} ms`],
      ['fairShareSaved()', `${fair.ms.toFixed(1)} ms (${(fair.ms / kernel.ms).toFixed(1)} × ksm_stat alone)`],
      ['ksmProcesses() with fair share', `${list.ms.toFixed(1)} ms`],
    ];
    const width = Math.max(...rows.map(([name]) => name.length));
    for (const [name, value] of rows) console.log(`${name.padEnd(width)}  ${value}`);
    writeFileSync(
      new URL('../out/fair-share.json', import.meta.url),
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: `${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()} ${arch()}`,
          processes: PROCESSES,
          holders: HOLDERS,
          mergedPages: merged,
          fairShareBytes: fairTotal,
          expectedBytes: expectedSaved,
          kernelProfitBytes: kernel.result,
          ksmStatMs: kernel.ms,
          fairShareMs: fair.ms,
          ksmProcessesMs: list.ms,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    for (const child of [...holders, ...idle]) child.kill('SIGKILL');
    ksm.applyKnobs({ run: 2 });
    ksm.restoreKnobs(snapshot);
    releaseKsmdLock();
  }
}

await main();
