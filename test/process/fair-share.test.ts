import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fairShareSaved } from '../../lib/process/fair-share.js';
import { compiledLib } from '../api/compiled-lib.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { ksmStatField, startPageHolder, stopAll } from './page-holder.js';

const WITH_KSMD = { timeout: 11 * 60_000 };
const PAGE = 4096;
const holders: ChildProcess[] = [];
afterAll(() => stopAll(holders));

describe('fairShareSaved with real merged processes', () => {
  it('credits each mapping (k−1)/k of a page and zero pages whole; the sum is what the host saves', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const seed = randomUUID();
    // Set a is held 3 times (saves 2 × 1024 pages), b twice (saves 512), and 256 zero-filled pages once (saves 256).
    const layout = [['a:1024'], ['a:1024', 'b:512'], ['b:512'], ['a:1024', 'zero:256']];
    for (const sets of layout) holders.push(await startPageHolder(seed, sets));
    const pids = holders.map((holder) => holder.pid ?? 0);
    const expectedMerging = [1024, 1536, 512, 1024];

    await withKsmd(
      async () => {
        const merged = await waitFor(
          () => pids.every((pid, i) => ksmStatField(pid, 'ksm_merging_pages') === expectedMerging[i]) && ksmStatField(pids[3] ?? 0, 'ksm_zero_pages') === 256,
          60_000,
        );
        expect(merged, 'ksmd merged every page of the holders').toBe(true);
        const share = fairShareSaved(pids);
        if (!share.available) throw new Error(share.reason);
        const a = (1024 * 2) / 3;
        const b = 512 / 2;
        const expected = [a, a + b, b, a + 256].map((pages) => pages * PAGE);
        pids.forEach((pid, i) => expect(share.savedBytes.get(pid), `holder ${i}`).toBeCloseTo(expected[i] ?? 0, -1));
        // The host saves (3−1) × 1024 + (2−1) × 512 pages by merging, plus the 256 zero pages.
        const hostSaving = (2 * 1024 + 512 + 256) * PAGE;
        expect(Math.abs(share.totalSavedBytes - hostSaving)).toBeLessThanOrEqual(hostSaving * 0.01);
        // The kernel's profit credits every mapping a whole page: it overstates.
        const kernelMerged = pids.reduce((sum, pid) => sum + ksmStatField(pid, 'ksm_merging_pages') + ksmStatField(pid, 'ksm_zero_pages'), 0) * PAGE;
        expect(kernelMerged).toBeGreaterThan(hostSaving * 1.3);
      },
      { use_zero_pages: '1' },
    );
  });

  it('credits nothing to a process with nothing merged', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const share = fairShareSaved([process.pid]);
    expect(share).toMatchObject({ available: true, totalSavedBytes: 0 });
    if (share.available) expect(share.savedBytes.get(process.pid)).toBe(0);
  });

  it('leaves out processes that do not exist', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const share = fairShareSaved([2 ** 22 - 1]);
    expect(share).toMatchObject({ available: true, totalSavedBytes: 0 });
    if (share.available) expect(share.savedBytes.size).toBe(0);
  });

  it('is unavailable, with the reason, without root', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const module = JSON.stringify(join(compiledLib(), 'process', 'fair-share.js'));
    const script = `console.log(JSON.stringify(require(${module}).fairShareSaved([process.pid])))`;
    const run = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ available: false, reason: expect.stringMatching(/readable only by root/) });
  });
});

describe('fairShareSaved arguments', () => {
  it('rejects what is not an array of pids', () => {
    expect(() => fairShareSaved(7 as unknown as number[])).toThrow(TypeError);
    expect(() => fairShareSaved(['1'] as unknown as number[])).toThrow(TypeError);
    expect(() => fairShareSaved([0])).toThrow(RangeError);
    expect(() => fairShareSaved([1.5])).toThrow(RangeError);
  });
});
