import { describe, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { MODES } from './support/run.js';
import { expectSurvives } from './support/torture.js';

// RELIABILITY.md §2: 8 threads × 1M malloc/free/realloc of mixed sizes, blocks
// handed between threads, every block's content checked.
const THREADS = 8;
const OPS_PER_THREAD = 1_000_000;

describe('threads: allocator torture under the library', () => {
  for (const mode of MODES) {
    it(`${THREADS} threads × ${OPS_PER_THREAD} operations: no corruption, no deadlock (${mode})`, async () => {
      await expectSurvives(
        mode,
        fixture('threads_torture'),
        [String(THREADS), String(OPS_PER_THREAD)],
        `threads=${THREADS} ops_per_thread=${OPS_PER_THREAD} corruptions=0\n`,
        90_000,
      );
    }, 120_000);
  }
});
