import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCached, buildPreloadLibrary, fixture, fixtureDir, repoRoot } from './support/native-build.js';
import { cleanEnv, explain, run, runHeld } from './support/run.js';

// RELIABILITY.md §6 (sanitizers). A sanitizer runtime must be the first library of
// a process, and an instrumented preload cannot run before that runtime is up,
// so each sanitizer is used where it can see something real:
// - the maps walker linked into a fuzzer built with ASan + UBSan;
// - the library built with UBSan, preloaded into a normal program (every hook live);
// - the library built with ASan + UBSan behind the ASan runtime, in an ASan program;
// - the library in front of the ASan and TSan runtimes (its hooks forward to
//   theirs), under the ASan- and TSan-built thread torture: memory errors and
//   races in the program with the library's hooks in every allocation's path.

const SANITIZE = ['-O1', '-g', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all'];
const ASAN_UBSAN = [...SANITIZE, '-fsanitize=address,undefined'];
const FUZZ_ROUNDS = 400;
const ASAN_THREAD_OPS = 20_000;
const TSAN_THREAD_OPS = 20_000;

const runtime = (name: string): string => execFileSync('gcc', [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();

function sanitizedFixture(name: string, flags: string[]): string {
  return fixture(name, { flags: [...flags, '-pthread'], libs: ['-ldl'] });
}

describe('sanitizers', () => {
  beforeAll(() => {
    console.log(`scaled: the sanitized thread torture runs 8 × ${ASAN_THREAD_OPS} (ASan) and 8 × ${TSAN_THREAD_OPS} (TSan) operations instead of 8 × 1M: the runtimes slow it 10-50×`);
  });

  it(`the maps walker survives ${FUZZ_ROUNDS} rounds of hostile maps files under ASan + UBSan`, () => {
    const fuzzer = buildCached('maps_fuzz-asan-ubsan', {
      compiler: 'gcc',
      sources: [join(fixtureDir, 'maps_fuzz.c'), join(repoRoot, 'native/common/maps_scan.c')],
      flags: ASAN_UBSAN,
    });
    const dir = mkdtempSync(join(tmpdir(), 'ksm-maps-fuzz-'));
    try {
      const result = run(fuzzer, [String(FUZZ_ROUNDS), '20261127', dir], { timeoutMs: 60_000 });
      expect(result.stderr.toString(), 'the walker reported a mapping that is not in the file').toBe('');
      expect(result.status, explain(result)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the library built with UBSan, preloaded with every hook live: no undefined behaviour', async () => {
    const library = buildPreloadLibrary({ flags: [...SANITIZE, '-fsanitize=undefined'] });
    for (const mode of ['madvise', 'prctl']) {
      const env = cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_MODE: mode });
      const torture = await runHeld(fixture('threads_torture'), ['8', '200000'], { env, timeoutMs: 60_000 });
      expect(torture.status, explain(torture)).toBe(0);
      expect(torture.stderr.toString()).not.toMatch(/runtime error/);
      expect(torture.held.mergeableKb, `${mode}: nothing marked`).toBeGreaterThan(0);
    }
  });

  it('the library built with ASan + UBSan, behind the ASan runtime, in an ASan program', () => {
    const library = buildPreloadLibrary({ flags: [...ASAN_UBSAN] });
    const program = sanitizedFixture('alloc_mix', ASAN_UBSAN);
    const reference = run(program, []);
    expect(reference.status, explain(reference)).toBe(0);
    for (const mode of ['madvise', 'prctl']) {
      const result = run(program, [], { env: cleanEnv({ LD_PRELOAD: `${runtime('libasan.so')}:${library}`, KSM_PRELOAD_MODE: mode }) });
      expect(result.status, explain(result)).toBe(0);
      expect(result.stdout.toString()).toBe(reference.stdout.toString());
    }
  });

  for (const [name, lib, flags, ops, extraEnv] of [
    ['ASan + UBSan', 'libasan.so', ASAN_UBSAN, ASAN_THREAD_OPS, { ASAN_OPTIONS: 'verify_asan_link_order=0:detect_leaks=0' }],
    ['ThreadSanitizer', 'libtsan.so', [...SANITIZE, '-fsanitize=thread'], TSAN_THREAD_OPS, { TSAN_OPTIONS: 'halt_on_error=1:exitcode=66' }],
  ] as const) {
    it(`the thread torture built with ${name}, the library's hooks in front of the runtime: clean (${ops} ops × 8 threads)`, async () => {
      const program = sanitizedFixture('threads_torture', [...flags]);
      const env = cleanEnv({ LD_PRELOAD: `${buildPreloadLibrary()}:${runtime(lib)}`, KSM_PRELOAD_MODE: 'madvise', ...extraEnv });
      const result = await runHeld(program, ['8', String(ops)], { env, timeoutMs: 150_000 });
      expect(result.stderr.toString()).not.toMatch(/WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error/);
      expect(result.status, explain(result)).toBe(0);
      expect(result.stdout.toString()).toBe(`threads=8 ops_per_thread=${ops} corruptions=0\n`);
      expect(result.held.mergeableKb, 'nothing marked').toBeGreaterThan(0);
    }, 200_000);
  }
});
