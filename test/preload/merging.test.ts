import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { buildWorkload, preloadEnv, startWorkload, type Mode, type Running } from './native-build.js';

function mergingPages(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8').trim());
}

// withKsmd may wait for other test files (other checkouts too) holding the machine-wide lock.
const LOCK_PATIENCE = { timeout: 300_000 };

/** Two processes holding the same data (same seed) under the library in `mode`. */
async function twins(mode: Mode, body: (pids: number[]) => Promise<void>): Promise<void> {
  const workload = buildWorkload();
  const running: Running[] = [];
  try {
    for (let i = 0; i < 2; i++) running.push(await startWorkload(workload, ['7'], preloadEnv(mode)));
    await body(running.map((r) => r.child.pid!));
  } finally {
    for (const r of running) await r.finish();
  }
}

describe('two processes with identical data, ksmd running', () => {
  it.for([
    ['madvise', ksmUnavailable],
    ['prctl', prctlUnavailable],
  ] as const)('%s mode: ksm_merging_pages rises', LOCK_PATIENCE, async ([mode, unavailable], ctx) => {
    requireOrSkip(ctx, unavailable());
    await withKsmd(() =>
      twins(mode, async (pids) => {
        // 40 × 256 KiB + 4 × 4 MiB of identical bytes per process: thousands of pages.
        const merged = await waitFor(() => pids.every((pid) => mergingPages(pid) > 1000), 30_000);
        expect(merged, `merging pages: ${pids.map(mergingPages).join(', ')}`).toBe(true);
      }),
    );
  });

  it('with the library off, nothing merges', LOCK_PATIENCE, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(() =>
      twins('off', async (pids) => {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        expect(pids.map(mergingPages)).toEqual([0, 0]);
      }),
    );
  });
});
