import { describe, expect, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { explain, modeEnv, percent, runHeld, type Mode } from './support/run.js';

// RELIABILITY.md §7: 100,000 small allocations and 10,000 mmap/munmap cycles.
// Marking slices of mappings, or some neighbours and not others, would stop
// the kernel from merging adjacent VMAs; the count must stay within 10 % of
// the run without marking, and the program's own mmap must never fail.
// The fixture has only ~24 VMAs and loading any shared library adds ~6 (its
// own segments), so the budget is measured against the library loaded with
// KSM_PRELOAD_MODE=off: the VMAs that marking itself costs.

const SMALL_ALLOCATIONS = 100_000;
const MMAP_CYCLES = 10_000;

async function budgetRun(mode: Mode | 'loaded-off'): Promise<{ vmas: number; mergeableKb: number; summary: string }> {
  const result = await runHeld(fixture('vma_budget'), [String(SMALL_ALLOCATIONS), String(MMAP_CYCLES)], {
    env: mode === 'loaded-off' ? modeEnv('madvise', { KSM_PRELOAD_MODE: 'off' }) : modeEnv(mode),
    timeoutMs: 60_000,
  });
  expect(result.status, explain(result)).toBe(0);
  const match = /^vmas=(\d+) mmap_failures=0 corrupt=0\n$/.exec(result.stdout.toString());
  expect(match, `${mode}: ${result.stdout.toString()} ${result.stderr.toString()}`).not.toBeNull();
  return {
    vmas: Number(match?.[1]),
    mergeableKb: result.held.mergeableKb,
    summary: `${match?.[1]} VMAs, coverage ${percent(result.held.ratio)} of ${result.held.anonymousKb} kB`,
  };
}

describe('mapping budget', () => {
  it(`${SMALL_ALLOCATIONS} small allocations + ${MMAP_CYCLES} mmap/munmap cycles: the program's own mmap never fails; within 10 % of the unmarked run in both modes`, async () => {
    const loaded = await budgetRun('loaded-off');
    const madvise = await budgetRun('madvise');
    const prctl = await budgetRun('prctl');
    console.log(`vma_budget: library loaded, mode off ${loaded.summary}; madvise ${madvise.summary}; prctl ${prctl.summary}`);
    expect(madvise.mergeableKb, 'madvise mode marked nothing').toBeGreaterThan(0);
    const budget = Math.floor(loaded.vmas * 1.1);
    expect(madvise.vmas, `madvise: ${madvise.vmas} VMAs against ${loaded.vmas} unmarked`).toBeLessThanOrEqual(budget);
    expect(prctl.vmas, `prctl: ${prctl.vmas} VMAs against ${loaded.vmas} unmarked`).toBeLessThanOrEqual(budget);
  });
});
