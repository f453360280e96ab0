// Tenants: the KSM page's scenario ("a host running 50 containers with Apache, PHP and
// MySQL", 30–50 % of RAM saved). N podman containers of one image, each MediaWiki on
// Apache with mod_php and its own MariaDB holding the same generated pages, started
// the way the page says (the `ksm snippet sysv` lines in /etc/init.d/mariadb and
// apache2's envvars), then again with `ksm run`. A bounded page-view load on loopback
// runs the whole time. Per variant, side by side:
//   - the RAM of all tenants (the sum of their cgroups' memory) unmerged and merged;
//   - each tenant's saving from `ksm top --by cgroup --json` (the fair-share savedBytes);
//   - ksmd's CPU % while merging and once merged (/proc/<ksmd>/stat);
//   - page-view latency p50/p99 unmerged and merged;
//   - the time until the tenants' merged bytes reach 90 % of the ideal, where the ideal
//     is analyzeMemory()'s: every duplicate page among the tenants' marked memory merged
//     (found by hashing each page, as the savings suite does);
//   - whether every page view once merged is byte-identical to the same page's view on
//     the same tenant before merging (a fixed set of pages viewed on every tenant in
//     both states, and every page the load viewed more than once).
// Holds the machine-wide KSM lock the tests use and restores every knob.
//
//   node bench/suites/40-tenants.mjs [--tenants N] [--rate VIEWS_PER_S] [--pages-to-scan N] [--sleep-ms N]
//     (needs root, KSM, podman, runc, catatonit, debootstrap and `npm run build`)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ensureTenantImage, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { LIBRARY_IN_TENANT, latencySummary, loadMismatches, responseMismatches, startLoad, startTenants, stopTenants, tenantMemory, tenantPids, viewPages } from '../../scripts/containers/tenants.mjs';
import { acquireKsmdLock, releaseKsmdLock } from '../ksmd-lock.mjs';

const require = createRequire(import.meta.url);
const root = new URL('../../', import.meta.url).pathname;
const ksm = require(`${root}dist/cjs/index.js`);
const { measureMergedBytes } = require(`${root}dist/cjs/analysis/analyze.js`);

const VARIANTS = ['sysv', 'ksm-run'];
const WARM_UP_S = 30;
const PHASE_S = 30;
const MERGE_TIMEOUT_S = 300;
const STABLE_FULL_SCANS = 2;
const SAMPLE_MS = 2000;
const PAGE_CLAIM = { low: 0.3, high: 0.5 };
/** Viewed on every tenant before and after merging, compared byte for byte. */
const PAGES_COMPARED = Array.from({ length: 50 }, (_, index) => index + 1);
const MiB = 2 ** 20;

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`--${name} needs a positive integer, got ${process.argv[at + 1]}`);
  return value;
}

const TENANTS = option('tenants', 8);
const RATE = option('rate', TENANTS);
const KNOBS = { pages_to_scan: option('pages-to-scan', 1000), sleep_millisecs: option('sleep-ms', 20) };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- ksmd's CPU time ---
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

function ksmdPid() {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'ksmd') return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error('no ksmd thread in /proc');
}

/** ksmd's utime + stime in seconds. */
function ksmdCpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

// --- measuring ---
const allPids = (tenants) => tenants.flatMap(tenantPids);

/** The tenants' RAM summed over their cgroups, averaged over a phase's samples. */
function memorySum(tenants) {
  return tenants.map(tenantMemory).reduce((sum, m) => ({ bytes: sum.bytes + m.bytes, anonymousBytes: sum.anonymousBytes + m.anonymousBytes }), { bytes: 0, anonymousBytes: 0 });
}

async function sampleMemory(tenants, seconds) {
  const samples = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    samples.push(memorySum(tenants));
    await sleep(SAMPLE_MS);
  }
  const mean = (key) => samples.reduce((sum, s) => sum + s[key], 0) / samples.length;
  return { bytes: mean('bytes'), anonymousBytes: mean('anonymousBytes') };
}

/** Runs ksmd until the tenants' merged bytes stop growing for a few full scans; the curve and the time to 90 % of ideal. */
async function mergeUntilSettled(tenants, idealBytes, ksmd) {
  const started = Date.now();
  const cpuStart = ksmdCpuSeconds(ksmd);
  ksm.applyKnobs({ ...KNOBS, run: 1 });
  let merged = 0;
  let scansAtGrowth = ksm.systemKsmStats().counters.full_scans ?? 0;
  let secondsTo90;
  const curve = [];
  while ((Date.now() - started) / 1000 < MERGE_TIMEOUT_S) {
    await sleep(SAMPLE_MS);
    const now = (await measureMergedBytes(allPids(tenants))) ?? 0;
    const seconds = (Date.now() - started) / 1000;
    const fullScans = ksm.systemKsmStats().counters.full_scans ?? 0;
    curve.push({ seconds, mergedBytes: now });
    if (secondsTo90 === undefined && now >= 0.9 * idealBytes) secondsTo90 = seconds;
    if (now > merged * 1.005) scansAtGrowth = fullScans;
    merged = Math.max(merged, now);
    if (now > 0 && fullScans - scansAtGrowth >= STABLE_FULL_SCANS) break;
  }
  const seconds = (Date.now() - started) / 1000;
  return { seconds, secondsTo90, mergedBytes: merged, curve, ksmdCpuPercent: ((ksmdCpuSeconds(ksmd) - cpuStart) / seconds) * 100 };
}

/** `ksm top --by cgroup --json`, the rows of these tenants (matched by container id or name). */
function topByTenant(tenants) {
  const result = spawnSync(process.execPath, [`${root}bin/ksm.js`, 'top', '--by', 'cgroup', '--json'], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (result.status !== 0) throw new Error(`ksm top --by cgroup --json exited ${result.status}: ${result.stderr}`);
  const rows = JSON.parse(result.stdout).cgroups;
  return tenants.map((tenant) => {
    const id = tenant.memoryDir.split('libpod-')[1];
    const row = rows.find((r) => r.name === tenant.name || (id && r.cgroup.includes(id)));
    return { tenant: tenant.name, savedBytes: row?.savedBytes, profitBytes: row?.profitBytes, mergingBytes: row?.mergingBytes };
  });
}

async function measureVariant(image, variant, snippetFile) {
  ksm.applyKnobs({ run: 2 });
  ksm.applyKnobs({ run: 0 });
  const tenants = await startTenants({ image, count: TENANTS, variant, repo: root, snippetFile, prefix: `ksm-bench-tenant-${process.pid}` });
  const load = startLoad(tenants, { rate: RATE });
  try {
    const ksmd = ksmdPid();
    await sleep(WARM_UP_S * 1000);
    load.phase('unmerged');
    const before = await sampleMemory(tenants, PHASE_S);
    const unmergedViews = await viewPages(tenants, PAGES_COMPARED);
    const analysis = await ksm.analyzeMemory(allPids(tenants));
    load.phase('merging');
    const merging = await mergeUntilSettled(tenants, analysis.idealAdvisedBytes, ksmd);
    load.phase('merged');
    const cpuStart = ksmdCpuSeconds(ksmd);
    const after = await sampleMemory(tenants, PHASE_S);
    const steadyCpuPercent = ((ksmdCpuSeconds(ksmd) - cpuStart) / PHASE_S) * 100;
    const perTenant = topByTenant(tenants);
    const mergedViews = await viewPages(tenants, PAGES_COMPARED);
    await load.stop();
    const differing = [...responseMismatches(unmergedViews, mergedViews), ...loadMismatches(load.results)];
    // Pairs compared: the fixed pages on every tenant, and each repeated view of a page by the load.
    const served = load.results.filter((r) => r.status === 200);
    const responsesCompared = mergedViews.length + served.length - new Set(served.map((r) => `${r.tenant} ${r.page}`)).size;
    return {
      variant,
      tenants: TENANTS,
      before,
      after,
      savedBytes: before.bytes - after.bytes,
      savedFraction: (before.bytes - after.bytes) / before.bytes,
      savedAnonymousFraction: (before.anonymousBytes - after.anonymousBytes) / before.anonymousBytes,
      residentAnonymousBytes: analysis.residentAnonymousBytes,
      coverage: analysis.coverage,
      idealBytes: analysis.ideal.bytes,
      idealAdvisedBytes: analysis.idealAdvisedBytes,
      mergedBytes: merging.mergedBytes,
      mergeSeconds: merging.seconds,
      secondsTo90: merging.secondsTo90,
      mergingCpuPercent: merging.ksmdCpuPercent,
      steadyCpuPercent,
      latency: { unmerged: latencySummary(load.results, 'unmerged'), merging: latencySummary(load.results, 'merging'), merged: latencySummary(load.results, 'merged') },
      skippedRequests: load.skipped,
      failedRequests: load.results.filter((r) => r.status !== 200).length,
      responsesCompared,
      responsesDiffering: differing.length,
      perTenant,
      curve: merging.curve,
    };
  } finally {
    await load.stop();
    stopTenants(tenants);
  }
}

// --- report ---
const mib = (x) => (x === undefined ? 'n/a' : (x / MiB).toFixed(0));
const pct = (x) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(1)} %`);
const ms = (x) => (x === undefined ? 'n/a' : x.toFixed(0));

function printTables(results) {
  const header = ['variant', 'tenants', 'RAM unmerged MiB', 'RAM merged MiB', 'saved', 'page claims', 'anon saved', 'merged ÷ ideal', 'to 90 % of ideal s', 'ksmd CPU merging / merged', 'p50 ms unmerged / merged', 'p99 ms unmerged / merged', 'failed', 'identical responses'];
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
  for (const r of results) {
    console.log(
      `| ${[
        r.variant,
        r.tenants,
        mib(r.before.bytes),
        mib(r.after.bytes),
        pct(r.savedFraction),
        `${PAGE_CLAIM.low * 100}–${PAGE_CLAIM.high * 100} %`,
        pct(r.savedAnonymousFraction),
        pct(r.idealAdvisedBytes > 0 ? r.mergedBytes / r.idealAdvisedBytes : undefined),
        r.secondsTo90 === undefined ? `not in ${r.mergeSeconds.toFixed(0)}` : r.secondsTo90.toFixed(0),
        `${r.mergingCpuPercent.toFixed(1)} / ${r.steadyCpuPercent.toFixed(1)} %`,
        `${ms(r.latency.unmerged.p50Ms)} / ${ms(r.latency.merged.p50Ms)}`,
        `${ms(r.latency.unmerged.p99Ms)} / ${ms(r.latency.merged.p99Ms)}`,
        r.failedRequests,
        `${r.responsesCompared - r.responsesDiffering} of ${r.responsesCompared}`,
      ].join(' | ')} |`,
    );
  }
  for (const r of results) {
    console.log(`\n${r.variant}: each tenant's saving (ksm top --by cgroup, fair-share savedBytes; kernel profit beside it), MiB`);
    console.log('| tenant | saved | kernel profit |\n|---|---|---|');
    for (const t of r.perTenant) console.log(`| ${t.tenant} | ${mib(t.savedBytes)} | ${mib(t.profitBytes)} |`);
    const sum = r.perTenant.reduce((s, t) => s + (t.savedBytes ?? 0), 0);
    console.log(`| sum | ${mib(sum)} | ${mib(r.perTenant.reduce((s, t) => s + (t.profitBytes ?? 0), 0))} |`);
  }
}

async function main() {
  const missing = process.getuid?.() !== 0 || !existsSync('/sys/kernel/mm/ksm/run') ? 'root and a kernel with KSM' : podmanUnavailable();
  if (missing) {
    console.log(`skipped: the tenants benchmark needs ${missing}`);
    return;
  }
  const started = Date.now();
  const image = await ensureTenantImage();
  console.error(`tenant image ${image} ready after ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const work = mkdtempSync(join(tmpdir(), 'ksm-bench-tenants-'));
  const snippetFile = join(work, 'snippet-sysv.sh');
  const snippet = spawnSync(process.execPath, [`${root}bin/ksm.js`, 'snippet', 'sysv', '--lib', LIBRARY_IN_TENANT], { encoding: 'utf8' });
  if (snippet.status !== 0) throw new Error(`ksm snippet sysv failed: ${snippet.stderr}`);
  writeFileSync(snippetFile, snippet.stdout);
  await acquireKsmdLock();
  const snapshot = ksm.saveKnobs();
  const results = [];
  try {
    if (snapshot.advisor_mode === 'scan-time') ksm.applyKnobs({ advisor_mode: 'none' });
    for (const variant of VARIANTS) {
      const result = await measureVariant(image, variant, snippetFile);
      results.push(result);
      console.error(`${variant}: ${mib(result.before.bytes)} → ${mib(result.after.bytes)} MiB (${pct(result.savedFraction)})`);
    }
  } finally {
    ksm.applyKnobs({ run: 2 });
    ksm.restoreKnobs(snapshot);
    releaseKsmdLock();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`${TENANTS} tenants, ${RATE} page views/s in total, ksmd pages_to_scan=${KNOBS.pages_to_scan} sleep_millisecs=${KNOBS.sleep_millisecs}\n`);
  printTables(results);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()} ${arch()}, Node ${process.version}`;
  mkdirSync(new URL('../out/', import.meta.url), { recursive: true });
  writeFileSync(new URL('../out/tenants.json', import.meta.url), `${JSON.stringify({ date: new Date().toISOString(), machine, rate: RATE, knobs: KNOBS, results }, null, 2)}\n`);
}

await main();
