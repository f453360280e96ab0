// Two tenants of the page's scenario (MediaWiki on Apache with mod_php, each with its
// own MariaDB, in podman containers of one image), started as the page says (the
// `ksm snippet sysv` lines in the real /etc/init.d/mariadb and apache2's envvars) and
// with `ksm run`, under a page-view load on loopback. The kernel must show every
// MariaDB and Apache process marked, ksmd must merge memory across the two tenants,
// `ksm top --by cgroup` must credit both, and every page view must succeed.
// `npm run bench -- tenants` measures the same with more tenants.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureMergedBytes } from '../../lib/analysis/analyze.js';
import { ensureTenantImage, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { LIBRARY_IN_TENANT, startLoad, startTenants, stopTenants, tenantMemory, tenantPids, tenantProcesses, type Tenant } from '../../scripts/containers/tenants.mjs';
import { withKsmd } from '../helpers/ksmd.js';
import { coverage } from '../helpers/smaps.js';
import { MiB, REPO, ksm, requireContainers } from './support.js';

/** Two MediaWiki tenants share far more than this once merged (measured: about 60 MiB). */
const MERGED_AT_LEAST = 16 * MiB;
/** About a minute of work, plus up to 10 minutes waiting for ksmd's machine-wide lock. */
const WITH_KSMD_TIMEOUT = 13 * 60_000;

let image = '';
let work = '';
/** Tenants still running, removed after all tests even when one timed out mid-way. */
const running: Tenant[][] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ksm-tenants-'));
  if (podmanUnavailable() !== undefined) return;
  image = await ensureTenantImage();
}, 20 * 60_000);

afterAll(() => {
  for (const tenants of running) stopTenants(tenants);
  rmSync(work, { recursive: true, force: true });
});

/** Whether a process opted in, and how: the kernel's flag, and LD_PRELOAD naming the library. */
function optIn(pid: number): { mergeAny: boolean; preload: boolean } {
  return {
    mergeAny: /ksm_merge_any: yes/.test(readFileSync(`/proc/${pid}/ksm_stat`, 'utf8')),
    preload: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').some((entry) => entry.startsWith('LD_PRELOAD=') && entry.includes(LIBRARY_IN_TENANT)),
  };
}

describe('tenants: MediaWiki, Apache with mod_php and MariaDB in podman containers', () => {
  for (const variant of ['sysv', 'ksm-run'] as const) {
    it(`${variant}: every MariaDB and Apache process is marked and the two tenants merge`, async (ctx) => {
      requireContainers(ctx);
      const snippetFile = join(work, 'snippet-sysv.sh');
      writeFileSync(snippetFile, ksm(['snippet', 'sysv', '--lib', LIBRARY_IN_TENANT]));
      let tenants: Tenant[] = [];
      try {
        tenants = await startTenants({ image, count: 2, variant, repo: REPO, snippetFile, prefix: `ksm-test-tenant-${variant}-${process.pid}` });
        running.push(tenants);
        const load = startLoad(tenants, { rate: 4 });
        try {
          for (const tenant of tenants) {
            const mariadb = tenantProcesses(tenant, 'mariadbd');
            const apache = tenantProcesses(tenant, 'apache2');
            expect(mariadb).toHaveLength(1);
            expect(apache.length).toBeGreaterThan(1);
            for (const pid of [...mariadb, ...apache]) {
              expect(optIn(pid), `pid ${pid}`).toEqual({ mergeAny: true, preload: variant === 'sysv' });
              expect(coverage(pid).ratio, `pid ${pid}`).toBeGreaterThan(0.9);
            }
          }
          await new Promise((done) => setTimeout(done, 10_000));
          const unmerged = tenants.map(tenantMemory).reduce((sum, m) => sum + m.bytes, 0);
          await withKsmd(async () => {
            const pids = tenants.flatMap(tenantPids);
            let merged = 0;
            for (const deadline = Date.now() + 120_000; Date.now() < deadline && merged < MERGED_AT_LEAST; ) {
              await new Promise((done) => setTimeout(done, 1000));
              merged = (await measureMergedBytes(pids)) ?? 0;
            }
            expect(merged / MiB, 'MiB merged among the tenants').toBeGreaterThanOrEqual(MERGED_AT_LEAST / MiB);
            const merging = tenants.map(tenantMemory).reduce((sum, m) => sum + m.bytes, 0);
            // The cgroups are charged less once duplicates are freed (noise: page cache, load).
            expect(merging).toBeLessThan(unmerged);
            const rows = JSON.parse(ksm(['top', '--by', 'cgroup', '--json'])).cgroups as Array<{ cgroup: string; name: string; savedBytes?: number }>;
            for (const tenant of tenants) {
              const id = tenant.memoryDir.split('libpod-')[1] ?? tenant.name;
              const row = rows.find((r) => r.name === tenant.name || r.cgroup.includes(id));
              expect(row?.savedBytes, `ksm top row of ${tenant.name}`).toBeGreaterThan(MERGED_AT_LEAST / 4);
            }
          });
        } finally {
          await load.stop();
        }
        expect(load.results.length).toBeGreaterThan(20);
        expect(load.results.filter((r) => r.status !== 200)).toEqual([]);
      } finally {
        stopTenants(tenants);
      }
    }, WITH_KSMD_TIMEOUT);
  }
});
