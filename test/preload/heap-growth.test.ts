import { describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { readSmaps } from '../helpers/smaps.js';
import { buildFixture, MADVISE_KERNELS, preloadEnv, startWorkload, type Mode } from './native-build.js';

// glibc grows its heaps behind the hooks' back: the brk heap by sbrk, a thread's arena by
// mprotect inside its 64 MiB reservation. A piece that grows next to a marked mapping
// while it is itself unmarked becomes a VMA of its own that never merges back (perl went
// from 59 to 86 VMAs, a forking fixture from 36 to 64). Each test grows a heap in rounds
// with a pause after each, where the library marks what grew.
const ROUNDS = 20;
/** Unmarked at the top of the heap, at most: the 64 KiB guard plus a step of growth made
 * after the last pause (glibc grows the heap by 128 KiB and more at a time). */
const UNMARKED_TOP_KB = 256;

async function afterGrowth(mode: Mode, args: string[] = [], extraEnv: Record<string, string> = {}) {
  const running = await startWorkload(buildFixture('heap_growth'), [String(ROUNDS), ...args], preloadEnv(mode, undefined, extraEnv));
  try {
    const mappings = readSmaps(running.child.pid!);
    const heap = mappings.filter((mapping) => mapping.path === '[heap]');
    const heapKb = heap.reduce((sum, mapping) => sum + mapping.anonymousKb, 0);
    const heapMergeableKb = heap.filter((m) => m.flags.includes('mg')).reduce((sum, mapping) => sum + mapping.anonymousKb, 0);
    return { vmas: mappings.length, heapVmas: heap.length, heapKb, heapMergeableKb };
  } finally {
    expect(await running.finish()).toBe(0);
  }
}

describe.each(MADVISE_KERNELS)('growing heaps in madvise mode%s', (_kernel, kernelEnv) => {
  it(`the brk heap stays at two VMAs, marked but for its top, after ${ROUNDS} rounds of growth and pause`, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const unmarked = await afterGrowth('off');
    const marked = await afterGrowth('madvise', [], kernelEnv);
    expect(unmarked.heapVmas).toBe(1);
    expect(marked.heapVmas, JSON.stringify(marked)).toBeLessThanOrEqual(2);
    expect(marked.heapKb).toBeGreaterThan(ROUNDS * 1024);
    expect(marked.heapKb - marked.heapMergeableKb, JSON.stringify(marked)).toBeLessThanOrEqual(UNMARKED_TOP_KB);
  });

  it('the brk heap gets its unmarked top back after glibc trims into the marked part, and grows on in two VMAs', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const marked = await afterGrowth('madvise', ['--trim'], kernelEnv);
    expect(marked.heapVmas, JSON.stringify(marked)).toBeLessThanOrEqual(2);
    expect(marked.heapKb - marked.heapMergeableKb, JSON.stringify(marked)).toBeLessThanOrEqual(UNMARKED_TOP_KB);
  });

  it(`a thread's arena keeps its VMAs after ${ROUNDS} rounds of growth and pause`, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const unmarked = await afterGrowth('off', ['--thread']);
    const marked = await afterGrowth('madvise', ['--thread'], kernelEnv);
    // One more at most: the brk heap's guard.
    expect(marked.vmas, `${marked.vmas} VMAs against ${unmarked.vmas} unmarked`).toBeLessThanOrEqual(unmarked.vmas + 1);
  });
});
