import { describe, expect, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { explain, modeEnv, run } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// RELIABILITY.md §6 (valgrind): memcheck on a C program with the library
// preloaded. Valgrind's own malloc replacement sits behind the library's
// hooks, so any invalid read or write, uninitialised use or bad free by the
// library (or caused by it) is an error here.

describe('valgrind memcheck', () => {
  for (const mode of ['madvise', 'prctl'] as const) {
    it(`a C program under the library is memcheck-clean (${mode})`, (ctx) => {
      const valgrind = requireTool(ctx, 'valgrind', 'valgrind');
      const program = fixture('alloc_mix', { flags: ['-O0', '-g'] });
      const reference = run(program, []);
      const result = run(valgrind, ['--tool=memcheck', '--error-exitcode=99', '--track-origins=yes', '--leak-check=no', '-q', program], {
        env: modeEnv(mode, { KSM_PRELOAD_VERBOSE: '1' }),
        timeoutMs: 120_000,
      });
      expect(result.status, explain(result)).toBe(0);
      expect(result.stdout.toString()).toBe(reference.stdout.toString());
      expect(result.stderr.toString()).not.toMatch(/==\d+== (Invalid|Conditional|Use of uninitialised|Syscall param)/);
      // The library really ran inside valgrind, in the mode asked for.
      expect(result.stderr.toString()).toMatch(new RegExp(`ksm-preload: pid \\d+: mode ${mode}`));
    }, 180_000);
  }
});
