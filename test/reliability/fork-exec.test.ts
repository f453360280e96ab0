import { describe, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { MODES } from './support/run.js';
import { expectSurvives } from './support/torture.js';

// RELIABILITY.md §3: fork from a threaded process while other threads allocate;
// each child allocates and execs. A lock held across fork would hang a child.
const ROUNDS = 200;
const ALLOCATOR_THREADS = 3;

describe('fork and exec from a threaded process under the library', () => {
  for (const mode of MODES) {
    it(`${ROUNDS} rounds with ${ALLOCATOR_THREADS} allocating threads, no hang (${mode})`, async () => {
      await expectSurvives(
        mode,
        fixture('fork_exec'),
        [String(ROUNDS), String(ALLOCATOR_THREADS)],
        `rounds=${ROUNDS} threads=${ALLOCATOR_THREADS} failures=0\n`,
        60_000,
      );
    }, 90_000);
  }
});
