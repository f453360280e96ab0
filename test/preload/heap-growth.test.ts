import { describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { readSmaps } from '../helpers/smaps.js';
import { buildFixture, preloadEnv, startWorkload, type Mode } from './native-build.js';

// glibc grows its heaps behind the hooks' back: the brk heap by sbrk, a thread's arena by
// mprotect inside its 64 MiB reservation. A piece that grows next to a marked mapping
// while it is itself unmarked becomes a VMA of its own that never merges back (perl went
// from 59 to 86 VMAs, a forking fixture from 36 to 64). Each test grows a heap in rounds
// with a pause after each, where the library marks what grew.
const ROUNDS = 20;

async function afterGrowth(mode: Mode, args: string[] = []) {
  const running = await startWorkload(buildFixture('heap_growth'), [String(ROUNDS), ...args], preloadEnv(mode));
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

describe('growing heaps in madvise mode', () => {
  it(`the brk heap stays at two VMAs, marked but for its top 64 KiB, after ${ROUNDS} rounds of growth and pause`, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const unmarked = await afterGrowth('off');
    const marked = await afterGrowth('madvise');
    expect(unmarked.heapVmas).toBe(1);
    expect(marked.heapVmas, JSON.stringify(marked)).toBeLessThanOrEqual(2);
    expect(marked.heapKb).toBeGreaterThan(ROUNDS * 1024);
    expect(marked.heapKb - marked.heapMergeableKb, JSON.stringify(marked)).toBeLessThanOrEqual(64);
  });

  it(`a thread's arena keeps its VMAs after ${ROUNDS} rounds of growth and pause`, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const unmarked = await afterGrowth('off', ['--thread']);
    const marked = await afterGrowth('madvise', ['--thread']);
    // One more at most: the brk heap's guard.
    expect(marked.vmas, `${marked.vmas} VMAs against ${unmarked.vmas} unmarked`).toBeLessThanOrEqual(unmarked.vmas + 1);
  });
});
