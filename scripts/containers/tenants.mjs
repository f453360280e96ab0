// The KSM page's scenario: tenants that are podman containers of one image (MediaWiki
// on Apache with mod_php, and its own MariaDB, identical pages), started with merging
// the way a hosting provider would, under a bounded request load on loopback.
// Shared by bench/suites/40-tenants.mjs and test/containers/tenants.test.ts.
import { createHash } from 'node:crypto';
import { Agent, get } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { podman } from './images.mjs';

/**
 * How a tenant starts MariaDB and Apache: `sysv` puts the lines of `ksm snippet sysv`
 * into /etc/init.d/mariadb and /etc/apache2/envvars; `ksm-run` starts both init
 * scripts under `ksm run`; `none` starts them without merging.
 */
export const VARIANTS = ['sysv', 'ksm-run', 'none'];
/** Where the tenants see the library: the folder `ksm install-lib` picks in Debian. */
export const LIBRARY_IN_TENANT = '/usr/lib64/libksm_preload.so';
/** The generated pages every tenant holds (build-wiki.sh imports Page 1 … Page N). */
export const PAGES = 300;
const pagePath = (page) => `/mediawiki/index.php?title=Page_${page}`;

/**
 * Starts `count` tenants of `image` and waits until each serves a page. `repo` is this
 * checkout (its built library, and for `ksm-run` its CLI); `snippetFile` holds the
 * output of `ksm snippet sysv --lib LIBRARY_IN_TENANT` for `sysv`. Ports are chosen by
 * podman on 127.0.0.1. Returns the tenants, each with its cgroup's memory files.
 */
export async function startTenants({ image, count, variant, repo, snippetFile, prefix }) {
  if (!VARIANTS.includes(variant)) throw new RangeError(`variant must be one of ${VARIANTS.join(', ')}`);
  const mounts = [];
  const bind = (source, target) => mounts.push('--mount', `type=bind,source=${source},target=${target},readonly`);
  if (variant === 'sysv') {
    bind(join(repo, 'build/Release/libksm_preload.so'), LIBRARY_IN_TENANT);
    bind(snippetFile, '/ksm/snippet-sysv.sh');
  } else if (variant === 'ksm-run') {
    bind(process.execPath, '/ksm/node');
    bind(repo, '/ksm/package');
  }
  const tenants = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `${prefix}-${i}`;
      podman(['run', '-d', '--init', '--name', name, '-p', '127.0.0.1::80', '-e', `KSM_TENANT_START=${variant}`, ...mounts, image]);
      tenants.push({ name });
    }
    for (const tenant of tenants) {
      await waitForLog(tenant.name, 'tenant ready', 120_000);
      tenant.port = Number(/:(\d+)\s*$/.exec(podman(['port', tenant.name, '80/tcp']).trim())?.[1]);
      tenant.memoryDir = memoryCgroup(Number(podman(['inspect', '--format', '{{.State.Pid}}', tenant.name]).trim()));
      const first = await request(tenant.port, pagePath(1));
      if (first.status !== 200) throw new Error(`${tenant.name} answered ${first.status} for Page_1`);
    }
    return tenants;
  } catch (error) {
    stopTenants(tenants);
    throw error;
  }
}

/** Removes the tenants' containers. */
export function stopTenants(tenants) {
  if (tenants.length > 0) podman(['rm', '--force', '--time', '0', '--ignore', ...tenants.map((t) => t.name)], { allowFailure: true });
}

async function waitForLog(container, text, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = podman(['logs', container], { allowFailure: true });
    if (logs.stdout.includes(text)) return;
    if (Date.now() > deadline) throw new Error(`${container} never printed ${JSON.stringify(text)}:\n${logs.stdout}${logs.stderr}`);
    await new Promise((done) => setTimeout(done, 250));
  }
}

/** The memory cgroup folder of a process: cgroup v1's memory hierarchy, else v2's. */
function memoryCgroup(pid) {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const v1 = lines.find((line) => line.split(':')[1]?.split(',').includes('memory'));
  if (v1) return join('/sys/fs/cgroup/memory', v1.split(':')[2]);
  const v2 = lines.find((line) => line.startsWith('0::'))?.slice(3);
  const dir = v2 === undefined ? undefined : ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'].map((root) => join(root, v2)).find((d) => existsSync(join(d, 'memory.current')));
  if (!dir) throw new Error(`no memory cgroup for pid ${pid}`);
  return dir;
}

/**
 * A tenant's memory from its cgroup: `bytes` is all it is charged (memory.current, or
 * v1's memory.usage_in_bytes: anonymous memory and page cache), `anonymousBytes` the
 * anonymous part (memory.stat anon, or v1's total_rss), which is what KSM merges.
 */
export function tenantMemory(tenant) {
  const stat = Object.fromEntries(
    readFileSync(join(tenant.memoryDir, 'memory.stat'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split(' '))
      .map(([key, value]) => [key, Number(value)]),
  );
  const v2 = existsSync(join(tenant.memoryDir, 'memory.current'));
  const bytes = Number(readFileSync(join(tenant.memoryDir, v2 ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8'));
  return { bytes, anonymousBytes: v2 ? stat.anon : stat.total_rss };
}

/** The host pids of every process in a tenant (its cgroup's cgroup.procs). */
export function tenantPids(tenant) {
  return readFileSync(join(tenant.memoryDir, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean).map(Number);
}

/** The processes of a tenant named `command` (e.g. mariadbd, apache2). */
export function tenantProcesses(tenant, command) {
  return tenantPids(tenant).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === command;
    } catch {
      return false;
    }
  });
}

/**
 * A page view. X-Request-Id names the page, so MediaWiki echoes that as wgRequestId
 * ($wgAllowExternalReqID in build-wiki.sh) instead of a random one.
 */
function request(port, path, agent) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const headers = { 'X-Request-Id': `ksm-load-${path.replace(/[^A-Za-z0-9]+/g, '-')}` };
    const req = get({ host: '127.0.0.1', port, path, agent, headers, timeout: 30_000 }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks), ms: Number(process.hrtime.bigint() - started) / 1e6 }));
      res.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), ms: Number(process.hrtime.bigint() - started) / 1e6 }));
  });
}

/**
 * A bounded load: `rate` page views per second in total, spread round-robin over the
 * tenants, pages picked by a seeded generator, at most `maxInFlight` at once (a
 * request due while that many are open is counted as skipped, not queued). Each
 * result is kept with the phase current when it was sent; `phase(name)` switches.
 */
export function startLoad(tenants, { rate = 8, maxInFlight = 16, seed = 7 } = {}) {
  // No keep-alive: under prefork an idle kept-alive connection would hold a worker.
  const agent = new Agent({ keepAlive: false, maxSockets: maxInFlight });
  const results = [];
  const skipped = {};
  let phase = 'warm-up';
  let inFlight = 0;
  let sent = 0;
  let state = seed;
  const pending = new Set();
  const timer = setInterval(() => {
    if (inFlight >= maxInFlight) {
      skipped[phase] = (skipped[phase] ?? 0) + 1;
      return;
    }
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const tenant = tenants[sent++ % tenants.length];
    const page = (state % PAGES) + 1;
    const sentPhase = phase;
    inFlight++;
    const done = request(tenant.port, pagePath(page), agent).then((result) => {
      inFlight--;
      results.push({ phase: sentPhase, tenant: tenant.name, page, status: result.status, ms: result.ms, bytes: result.body.length, digest: pageDigest(result.body) });
      pending.delete(done);
    });
    pending.add(done);
  }, 1000 / rate);
  return {
    phase(name) {
      phase = name;
    },
    results,
    skipped,
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      agent.destroy();
    },
  };
}

/**
 * The SHA-256 of a page view. The one value MediaWiki computes anew for every request
 * that the wiki's settings cannot turn off, the backend's response time in
 * milliseconds (`"wgBackendResponseTime":N`), is set to 0 first; everything else must
 * match byte for byte. (Its timing report is off, and the request id is the client's.)
 */
export function pageDigest(body) {
  return createHash('sha256').update(body.toString('latin1').replace(/"wgBackendResponseTime":\d+/g, '"wgBackendResponseTime":0'), 'latin1').digest('hex');
}

/**
 * Views `pages` (numbers) on every tenant, a few at a time; returns one entry per
 * tenant and page: { tenant, page, status, digest }.
 */
export async function viewPages(tenants, pages, concurrency = 4) {
  const jobs = tenants.flatMap((tenant) => pages.map((page) => ({ tenant, page })));
  const views = [];
  const agent = new Agent({ keepAlive: false, maxSockets: concurrency });
  const worker = async () => {
    for (let job = jobs.shift(); job; job = jobs.shift()) {
      const result = await request(job.tenant.port, pagePath(job.page), agent);
      views.push({ tenant: job.tenant.name, page: job.page, status: result.status, digest: pageDigest(result.body) });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return views;
}

/**
 * Every page view that differs from the reference view of the same page on the same
 * tenant, or failed, or has no reference: `views` against `reference` (both lists of
 * { tenant, page, status, digest }). An empty list means every response is identical.
 */
export function responseMismatches(reference, views) {
  const expected = new Map(reference.filter((view) => view.status === 200).map((view) => [`${view.tenant} ${view.page}`, view.digest]));
  return views.filter((view) => view.status !== 200 || expected.get(`${view.tenant} ${view.page}`) !== view.digest);
}

/**
 * Load results that differ from an earlier or later view of the same page on the same
 * tenant (every phase against every other): the first view of each is the reference.
 */
export function loadMismatches(results) {
  const first = new Map();
  const mismatches = [];
  for (const result of results.filter((r) => r.status === 200)) {
    const key = `${result.tenant} ${result.page}`;
    if (!first.has(key)) first.set(key, result);
    else if (first.get(key).digest !== result.digest) mismatches.push({ ...result, reference: first.get(key) });
  }
  return mismatches;
}

/** p50 and p99 (nearest rank) of the latencies of one phase, and how many failed. */
export function latencySummary(results, phase) {
  const own = results.filter((r) => r.phase === phase);
  const ms = own.filter((r) => r.status === 200).map((r) => r.ms).sort((a, b) => a - b);
  const rank = (q) => ms[Math.min(ms.length - 1, Math.max(0, Math.ceil(q * ms.length) - 1))];
  return { requests: own.length, failed: own.length - ms.length, p50Ms: rank(0.5), p99Ms: rank(0.99) };
}
