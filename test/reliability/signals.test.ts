import { describe, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { MODES } from './support/run.js';
import { expectSurvives } from './support/torture.js';

// RELIABILITY.md §4: a SIGALRM every 50 µs whose handler maps, writes and unmaps
// memory, landing inside malloc, realloc, free and the library's hooks.
const OPERATIONS = 2_000_000;

describe('signals: mmap/munmap in a handler during a malloc storm', () => {
  for (const mode of MODES) {
    it(`${OPERATIONS} allocations under a 50 µs timer: no corruption, no hang (${mode})`, async () => {
      await expectSurvives(
        mode,
        fixture('signal_storm'),
        [String(OPERATIONS)],
        // At least a thousand signals, or the storm did not happen.
        new RegExp(`^operations=${OPERATIONS} signals=[1-9]\\d{3,} handler_failures=0 corrupt=0\\n$`),
        60_000,
      );
    }, 90_000);
  }
});
