import { describe, expect, it } from 'vitest';
import { buildPreloadLibrary, fixture } from './support/native-build.js';
import { cleanEnv, explain, MODES, run } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// The library's hooks run inside signal handlers and fork children. A SIGCHLD
// handler's first waitpid, read or sigsuspend must not look the real function up
// (dlsym) at that moment: under musl, dlsym then waits forever on the loader lock
// the interrupted dlopen holds. And no lock may be inherited held across fork.

const FIRST_CALLS = ['waitpid', 'read', 'sigsuspend'] as const;
// One chance per process (the first call); a lazy lookup hangs about 2 runs in 3.
const RUNS = 8;

function libraryFor(libc: 'glibc' | 'musl', compiler: string): string {
  return libc === 'glibc'
    ? buildPreloadLibrary()
    : buildPreloadLibrary({ compiler, libs: ['-lpthread'] });
}

describe('signal handlers: the first call of an idle hook', () => {
  for (const libc of ['glibc', 'musl'] as const) {
    for (const first of FIRST_CALLS) {
      for (const mode of MODES) {
        it(`${libc}: a SIGCHLD handler's first ${first} while the program is in dlopen/malloc (${mode})`, (ctx) => {
          const compiler = libc === 'musl' ? requireTool(ctx, 'musl-gcc', 'musl-tools') : 'gcc';
          const library = libraryFor(libc, compiler);
          const program = fixture('sigchld_first_call', libc === 'musl' ? { compiler, flags: ['-O2', '-g'], libs: [] } : {});
          // 'off' still preloads the library (mode off): the idle hooks are there all the same.
          const env = cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_MODE: mode });
          for (let i = 0; i < RUNS; i++) {
            const result = run(program, [first, library], { env, timeoutMs: 10_000 });
            expect(result.timedOut, `run ${i + 1} hung: ${explain(result)}`).toBe(false);
            expect(result.status, `run ${i + 1}: ${explain(result)}`).toBe(0);
            expect(result.stdout.toString()).toBe('reaped=3 handler_failed=0\n');
          }
        }, 120_000);
      }
    }
  }
});

describe('fork: no lock is inherited held', () => {
  for (const mode of MODES) {
    it(`a child registers an excluded range while the parent's other thread was registering (${mode})`, () => {
      const library = buildPreloadLibrary();
      const result = run(fixture('fork_exclude'), [], { env: cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_MODE: mode }), timeoutMs: 60_000 });
      expect(result.status, `${result.stdout.toString()} ${explain(result)}`).toBe(0);
      expect(result.stdout.toString()).toBe('forks=300\n');
    }, 90_000);
  }
});
