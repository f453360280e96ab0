import { describe, expect, it } from 'vitest';
import { buildPreloadLibrary, fixture } from './support/native-build.js';
import { cleanEnv, explain, percent, run, runHeld } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// RELIABILITY.md §6 (musl): the library built with musl-gcc (musl-tools), preloaded
// into a musl-linked program by musl's dynamic loader, in both modes.

describe('musl', () => {
  it('a musl build of the library works in a musl-linked program (madvise and prctl)', async (ctx) => {
    const muslGcc = requireTool(ctx, 'musl-gcc', 'musl-tools');
    const library = buildPreloadLibrary({ compiler: muslGcc, libs: ['-lpthread'] });
    const program = fixture('alloc_mix', { compiler: muslGcc, flags: ['-O2', '-g'], libs: [] });
    const reference = run(program, []);
    expect(reference.status, explain(reference)).toBe(0);
    for (const mode of ['madvise', 'prctl']) {
      const env = cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_MODE: mode, KSM_PRELOAD_VERBOSE: '1' });
      const result = await runHeld(program, [], { env, timeoutMs: 60_000 });
      expect(result.status, explain(result)).toBe(0);
      expect(result.stdout.toString()).toBe(reference.stdout.toString());
      expect(result.stderr.toString()).toMatch(new RegExp(`ksm-preload: pid \\d+: mode ${mode}`));
      expect(result.held.mergeableKb, `${mode}: nothing marked`).toBeGreaterThan(0);
      console.log(`musl alloc_mix [${mode}]: coverage ${percent(result.held.ratio)} of ${result.held.anonymousKb} kB`);
    }
  });
});
