import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { startExporter } from '../../lib/fleet/exporter.js';
import { runInProcess, WITH_KSMD } from '../cli/harness.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { removeWorkerBinary, startWorker, stopWorkers, type Worker } from './workers.js';

const CHROMIUM = '/usr/bin/chromium';
/** Kept for people to look at: build/ holds the test outputs. */
const SCREENSHOT = join(__dirname, '../../build/dashboard.png');
const MIB = 1024 * 1024;
const mib = (bytes: number | undefined): string => (bytes === undefined ? 'n/a' : (bytes / MIB).toFixed(1));

describe('the live dashboard in headless Chromium', () => {
  const workers: Worker[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ksm-dashboard-'));
  afterAll(async () => {
    await stopWorkers(workers);
    removeWorkerBinary();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows what `ksm status --json` and `ksm top --by cgroup --json` report, and autotune decisions', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable() ?? (existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install chromium)`));
    const pages = 2048;
    for (const mode of ['madvise', 'madvise', 'prctl'] as const) workers.push(await startWorker(pages, mode));
    const log = join(dir, 'autotune.jsonl');
    const decisions = [
      { time: '2026-12-01T10:00:00.000Z', action: 'start', reason: 'mergeable memory waits to be scanned', knobs: { run: 1, pages_to_scan: 100 } },
      { time: '2026-12-01T10:01:00.000Z', action: 'boost', reason: '12000 mergeable pages not yet scanned', knobs: { run: 1, pages_to_scan: 1000 } },
      { time: '2026-12-01T10:11:00.000Z', action: 'relax', reason: 'the last 3 full scans added no savings', knobs: { run: 1, pages_to_scan: 200 } },
    ];
    writeFileSync(log, `${decisions.map((decision) => JSON.stringify(decision)).join('\n')}\n{"torn`);

    await withKsmd(async () => {
      const merging = (): number => workers.reduce((sum, worker) => sum + Number(readFileSync(`/proc/${worker.pid}/ksm_merging_pages`, 'utf8')), 0);
      expect(await waitFor(() => merging() >= 3 * pages, 60_000)).toBe(true);
      // Stopped, ksmd leaves every counter still: the page and the CLI see one state.
      writeFileSync('/sys/kernel/mm/ksm/run', '0');
      const exporter = await startExporter({ port: 0, sampleSeconds: 1, autotuneLog: log });
      const userDataDir = mkdtempSync(join(dir, 'chromium-'));
      let browser: BrowserContext | undefined;
      try {
        browser = await chromium.launchPersistentContext(userDataDir, {
          executablePath: CHROMIUM,
          headless: true,
          viewport: { width: 1280, height: 900 },
          args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        });
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (error) => errors.push(error.message));
        await page.goto(`${exporter.url}/`);
        await page.waitForSelector('#updated[data-time]');
        // Two refreshes, so the chart has at least two points.
        await page.waitForFunction("document.querySelectorAll('#chart canvas').length > 0");
        await page.waitForTimeout(2500);

        const status = JSON.parse((await runInProcess(['status', '--json'])).stdout);
        const top = JSON.parse((await runInProcess(['top', '--by', 'cgroup', '--json'])).stdout);
        const text = (selector: string): Promise<string> => page.locator(selector).first().innerText();

        expect(await text('#saved-mib')).toBe(mib(status.savedBytes));
        expect(await text('#pages-sharing')).toBe(String(status.counters.pages_sharing));
        expect(status.counters.pages_sharing).toBeGreaterThanOrEqual(2 * pages);
        expect(await text('#pages-shared')).toBe(String(status.counters.pages_shared));
        expect(await text('#profit-mib')).toBe(mib(status.profitBytes));
        expect(await text('#full-scans')).toBe(String(status.counters.full_scans));
        expect(await page.locator('#ksmd-run').getAttribute('data-run')).toBe(status.knobs.run);
        for (const [knob, value] of Object.entries(status.knobs)) {
          expect({ knob, shown: await text(`#knobs tr[data-knob="${knob}"] td.value`) }).toEqual({ knob, shown: String(value) });
        }

        // The workers' cgroup: merged and fair-share MiB as `ksm top --by cgroup` has them.
        const rows = await page.locator('#cgroups tbody tr[data-cgroup]').evaluateAll((trs) =>
          trs.map((tr) => ({ path: tr.getAttribute('data-cgroup'), merged: tr.querySelector('.merged')?.textContent, fairShare: tr.querySelector('.fair-share')?.textContent })),
        );
        expect(rows.length).toBeGreaterThan(0);
        for (const group of top.cgroups as Array<{ cgroup: string; mergingBytes: number; savedBytes?: number }>) {
          expect(rows.find((row) => row.path === group.cgroup)).toEqual({ path: group.cgroup, merged: mib(group.mergingBytes), fairShare: mib(group.savedBytes) });
        }

        const shownDecisions = await page.locator('#autotune tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
        expect(shownDecisions.map((row) => row[1])).toEqual(['relax', 'boost', 'start']);
        expect(shownDecisions[0]?.[2]).toBe(decisions[2]?.reason);

        expect(await page.locator('#chart canvas').count()).toBe(1);
        expect(errors).toEqual([]);
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
        expect(statSync(SCREENSHOT).size).toBeGreaterThan(20_000);
      } finally {
        await browser?.close();
        await exporter.close();
      }
    });
  });
});
