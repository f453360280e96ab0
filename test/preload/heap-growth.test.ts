import { describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { readSmaps } from '../helpers/smaps.js';
import { buildFixture, preloadEnv, startWorkload, type Mode } from './native-build.js';

// glibc grows the brk heap behind the hooks' back. Marked too eagerly, each step became a
// VMA of its own that never merged back (perl: 59 → 86 VMAs). The library keeps the heap
// to a marked part and an unmarked guard at its top, however often it grows and pauses.
const ROUNDS = 20;

async function heapAfterGrowth(mode: Mode) {
  const running = await startWorkload(buildFixture('heap_growth'), [String(ROUNDS)], preloadEnv(mode));
  try {
    const heap = readSmaps(running.child.pid!).filter((mapping) => mapping.path === '[heap]');
    const anonymousKb = heap.reduce((sum, mapping) => sum + mapping.anonymousKb, 0);
    const mergeableKb = heap.filter((m) => m.flags.includes('mg')).reduce((sum, mapping) => sum + mapping.anonymousKb, 0);
    return { vmas: heap.length, anonymousKb, mergeableKb };
  } finally {
    expect(await running.finish()).toBe(0);
  }
}

describe('the brk heap in madvise mode', () => {
  it(`stays at two VMAs, marked but for its top 64 KiB, after ${ROUNDS} rounds of growth and pause`, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const unmarked = await heapAfterGrowth('off');
    const marked = await heapAfterGrowth('madvise');
    expect(unmarked.vmas).toBe(1);
    expect(marked.vmas, JSON.stringify(marked)).toBeLessThanOrEqual(2);
    expect(marked.anonymousKb).toBeGreaterThan(ROUNDS * 1024);
    expect(marked.anonymousKb - marked.mergeableKb, JSON.stringify(marked)).toBeLessThanOrEqual(64);
  });
});
