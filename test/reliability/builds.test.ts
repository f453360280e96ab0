import { beforeAll, describe, expect, it } from 'vitest';
import { buildPreloadLibrary, fixture } from './support/native-build.js';
import { cleanEnv, explain, percent, run, runHeld } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// RELIABILITY.md §6 (compilers): the library's sources built with gcc and clang at
// -O0, -O2 and -O3 (the dlsym recursion guard must survive -O2 and -O3), each
// build preloaded into the thread torture fixture and a deterministic
// allocation program in madvise mode.

const THREAD_OPS = 100_000;

describe('builds: gcc and clang at -O0, -O2, -O3', () => {
  beforeAll(() => {
    console.log(`scaled: each of the 6 builds runs the thread torture at 8 × ${THREAD_OPS} operations (the full 8 × 1M runs in threads.test.ts)`);
  });

  for (const compiler of ['gcc', 'clang']) {
    for (const level of ['-O0', '-O2', '-O3']) {
      it(`${compiler} ${level}: the library runs the torture and keeps output identical`, async (ctx) => {
        requireTool(ctx, compiler, compiler);
        const library = buildPreloadLibrary({ compiler, flags: [level] });
        const env = cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_MODE: 'madvise' });
        const torture = await runHeld(fixture('threads_torture'), ['8', String(THREAD_OPS)], { env, timeoutMs: 60_000 });
        expect(torture.status, explain(torture)).toBe(0);
        expect(torture.stdout.toString()).toBe(`threads=8 ops_per_thread=${THREAD_OPS} corruptions=0\n`);
        expect(torture.held.mergeableKb, 'nothing marked').toBeGreaterThan(0);
        const reference = run(fixture('alloc_mix'), []);
        const preloaded = run(fixture('alloc_mix'), [], { env });
        expect(preloaded.status, explain(preloaded)).toBe(0);
        expect(preloaded.stdout.toString()).toBe(reference.stdout.toString());
        console.log(`${compiler} ${level}: torture coverage ${percent(torture.held.ratio)}`);
      });
    }
  }
});
