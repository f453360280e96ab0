import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { groupByCgroup, ksmProcesses, type CgroupKsmRow } from '../../lib/process/top.js';
import { runInProcess } from '../cli/harness.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { ksmStatField, startPageHolder, stopAll } from './page-holder.js';

/** Where this host mounts cgroup v2: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts. */
function cgroup2Mount(): string | undefined {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[2] === 'cgroup2')?.[1];
}

const PAGE = 4096;
const mount = cgroup2Mount();
const skipReason = ksmUnavailable() ?? (mount ? undefined : 'no cgroup v2 hierarchy is mounted');
const groups = [1, 2, 3].map((n) => `/ksm-fair-share-${process.pid}-${n}`);
const holders: ChildProcess[] = [];

afterAll(async () => {
  await stopAll(holders);
  for (const group of groups) {
    try {
      rmdirSync(join(mount ?? '', group));
    } catch {
      // Never created (skipped run).
    }
  }
});

describe('fair-share savings per cgroup', () => {
  it('add up to what the host saves among these processes, where the kernel profit overstates it', { timeout: 11 * 60_000 }, async (ctx) => {
    requireOrSkip(ctx, skipReason);
    for (const group of groups) mkdirSync(join(mount ?? '', group));
    const seed = randomUUID();
    // Group 1 holds set a once; group 2 holds a once and b twice (two processes); group 3 holds a and 256 zero pages.
    const layout: Array<[number, string[]]> = [
      [0, ['a:1024']],
      [1, ['a:1024', 'b:512']],
      [1, ['b:512']],
      [2, ['a:1024', 'zero:256']],
    ];
    for (const [group, sets] of layout) {
      const holder = await startPageHolder(seed, sets);
      holders.push(holder);
      writeFileSync(join(mount ?? '', groups[group] ?? '', 'cgroup.procs'), String(holder.pid));
    }
    const pids = holders.map((holder) => holder.pid ?? 0);
    const expectedMerging = [1024, 1536, 512, 1024];

    await withKsmd(
      async () => {
        const merged = await waitFor(
          () => pids.every((pid, i) => ksmStatField(pid, 'ksm_merging_pages') === expectedMerging[i]) && ksmStatField(pids[3] ?? 0, 'ksm_zero_pages') === 256,
          60_000,
        );
        expect(merged, 'ksmd merged every page of the holders').toBe(true);

        // Set a: 3 copies save 2 × 1024 pages; set b: 2 copies save 512; the 256 zero pages save 256.
        const hostSaving = (2 * 1024 + 512 + 256) * PAGE;
        const a = (1024 * 2) / 3;
        const expectedByGroup = [a, a + 512, a + 256].map((pages) => pages * PAGE);

        const list = ksmProcesses(pids);
        expect(list.fairShare).toEqual({ available: true });
        const rows = groupByCgroup(list.processes);
        const ours = groups.map((group) => rows.find((row) => row.cgroup === group));
        ours.forEach((row, i) => {
          expect(row, groups[i]).toMatchObject({ name: groups[i], processes: i === 1 ? 2 : 1 });
          expect(Math.abs((row?.savedBytes ?? 0) - (expectedByGroup[i] ?? 0))).toBeLessThanOrEqual(PAGE);
        });
        const summed = ours.reduce((sum, row) => sum + (row?.savedBytes ?? 0), 0);
        expect(Math.abs(summed - hostSaving)).toBeLessThanOrEqual(hostSaving * 0.01);
        const kernelProfit = ours.reduce((sum, row) => sum + (row?.profitBytes ?? 0), 0);
        expect(kernelProfit, "the kernel's profit counts every mapping whole").toBeGreaterThan(hostSaving * 1.3);

        // The command shows the same figures.
        const json = JSON.parse((await runInProcess(['top', '--by', 'cgroup', '--json'])).stdout) as { cgroups: CgroupKsmRow[]; fairShare: unknown };
        expect(json.fairShare).toEqual({ available: true });
        const shown = groups.map((group) => json.cgroups.find((row) => row.cgroup === group)?.savedBytes ?? 0);
        expect(Math.abs(shown.reduce((sum, bytes) => sum + bytes, 0) - hostSaving)).toBeLessThanOrEqual(hostSaving * 0.01);
      },
      { use_zero_pages: '1' },
    );
  });
});
