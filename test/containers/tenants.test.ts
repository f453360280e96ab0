// Two tenants of the page's scenario (MediaWiki on Apache with mod_php, each with its
// own MariaDB, in podman containers of one image), started as the page says (the
// `ksm snippet sysv` lines in the real /etc/init.d/mariadb and apache2's envvars) and
// with `ksm run`, under a page-view load on loopback. The kernel must show every
// MariaDB and Apache process marked, ksmd must merge memory across the two tenants,
// `ksm top --by cgroup` must credit both, and every page view must succeed and be
// byte-identical to the same page's view before merging.
// `npm run bench -- tenants` measures the same with more tenants.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureMergedBytes } from '../../lib/analysis/analyze.js';
import { ensureTenantImage, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { LIBRARY_IN_TENANT, loadMismatches, responseMismatches, startLoad, startTenants, stopTenants, tenantMemory, tenantPids, tenantProcesses, viewPages, type Tenant } from '../../scripts/containers/tenants.mjs';
import { withKsmd } from '../helpers/ksmd.js';
import { coverage } from '../helpers/smaps.js';
import { MiB, REPO, ksm, requireContainers } from './support.js';

/** Two MediaWiki tenants share far more than this once merged (measured: about 150 MiB). */
const MERGED_AT_LEAST = 32 * MiB;
/** Two or three minutes of work, plus up to 10 minutes waiting for ksmd's machine-wide lock. */
const WITH_KSMD_TIMEOUT = 13 * 60_000;
/** The pages viewed on each tenant before and after merging, compared byte for byte. */
const PAGES_COMPARED = Array.from({ length: 40 }, (_, index) => index + 1);

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
      // The lock is held from the start: two tenants' marked memory would slow ksmd for
      // whichever test holds it otherwise. ksmd waits (run=0) until the unmerged views.
      await withKsmd(async () => {
        writeFileSync('/sys/kernel/mm/ksm/run', '0');
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
            // Warm caches first: MariaDB's buffer pool and PHP's heaps grow with the first page views.
            await new Promise((done) => setTimeout(done, 20_000));
            const unmerged = await viewPages(tenants, PAGES_COMPARED);
            const anonymous = () => tenants.map(tenantMemory).reduce((sum, m) => sum + m.anonymousBytes, 0);
            const pids = tenants.flatMap(tenantPids);
            const anonymousAtStart = anonymous();
            const mergedAtStart = (await measureMergedBytes(pids)) ?? 0;
            writeFileSync('/sys/kernel/mm/ksm/run', '1');
            // ksmd reaches one tenant's processes before the other's: poll until both gained.
            const savedByTenant = () => {
              const rows = JSON.parse(ksm(['top', '--by', 'cgroup', '--json'])).cgroups as Array<{ cgroup: string; name: string; savedBytes?: number }>;
              return tenants.map((tenant) => {
                const id = tenant.memoryDir.split('libpod-')[1] ?? tenant.name;
                return rows.find((r) => r.name === tenant.name || r.cgroup.includes(id))?.savedBytes ?? 0;
              });
            };
            let mergedNow = 0;
            let saved = tenants.map(() => 0);
            for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
              await new Promise((done) => setTimeout(done, 2000));
              mergedNow = ((await measureMergedBytes(pids)) ?? 0) - mergedAtStart;
              if (mergedNow < MERGED_AT_LEAST) continue;
              saved = savedByTenant();
              if (saved.every((bytes) => bytes >= MERGED_AT_LEAST / 4)) break;
            }
            expect(mergedNow / MiB, 'MiB merged among the tenants').toBeGreaterThanOrEqual(MERGED_AT_LEAST / MiB);
            expect(Math.min(...saved) / MiB, `each tenant's saving in ksm top --by cgroup, MiB: ${saved.map((b) => (b / MiB).toFixed(1))}`).toBeGreaterThanOrEqual(MERGED_AT_LEAST / 4 / MiB);
            // The freed duplicates leave the cgroups' anonymous memory (half the margin for load noise).
            expect(anonymousAtStart - anonymous()).toBeGreaterThan(mergedNow / 2);
            // Served from merged pages, every page is what it was before.
            const merged = await viewPages(tenants, PAGES_COMPARED);
            expect(unmerged.filter((view) => view.status !== 200)).toEqual([]);
            expect(responseMismatches(unmerged, merged)).toEqual([]);
          } finally {
            await load.stop();
          }
          expect(load.results.length).toBeGreaterThan(20);
          expect(load.results.filter((r) => r.status !== 200)).toEqual([]);
          expect(loadMismatches(load.results)).toEqual([]);
        } finally {
          stopTenants(tenants);
        }
      });
    }, WITH_KSMD_TIMEOUT);
  }
});
