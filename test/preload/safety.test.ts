import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { requireTool } from '../helpers/tools.js';
import { buildPreloadLibrary } from '../helpers/native-build.js';
import { coverage } from '../helpers/smaps.js';
import { buildFixture, buildLibrary, buildWorkload, coverageReaching, fixturesDir, preloadEnv, startWorkload, type Toolchain } from './native-build.js';
import { readFileSync } from 'node:fs';

function run(program: string, env: NodeJS.ProcessEnv) {
  const result = spawnSync(program, [], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

const toolchains: Toolchain[] = [
  { cc: 'gcc', opt: '-O0' },
  { cc: 'gcc', opt: '-O2' },
  { cc: 'gcc', opt: '-O3' },
  { cc: 'clang', opt: '-O1' },
  { cc: 'clang', opt: '-O2' },
  { cc: 'clang', opt: '-O3' },
];

describe('the hooks never change errno', () => {
  it.for(toolchains)('with a library built by $cc $opt', ({ cc, opt }, ctx) => {
    if (cc) requireTool(ctx, cc, cc);
    const library = buildLibrary({ cc, opt });
    for (const mode of ['madvise', 'prctl', 'off'] as const) {
      const result = run(buildFixture('errno_hooks'), preloadEnv(mode, library));
      expect(result.stdout, `${mode}: ${result.stderr}`).toMatch(/^ok \d+\n$/);
      expect(result.status).toBe(0);
    }
  });
});

describe('the dlsym bootstrap', () => {
  it.for([{ cc: 'gcc' }, { cc: 'clang' }] as const)('serves allocations made inside dlsym ($cc -O2)', ({ cc }, ctx) => {
    requireTool(ctx, cc, cc);
    // A copy of the library whose dlsym allocates: without the bootstrap buffer (or with
    // a recursion flag the optimiser dropped) malloc would recurse into itself forever.
    const library = buildPreloadLibrary({ compiler: cc, extraSources: [join(fixturesDir, 'allocating_dlsym.c')] });
    const result = run(buildFixture('errno_hooks'), preloadEnv('madvise', library));
    expect(result.signal).toBeNull();
    expect(result.stdout).toMatch(/^ok \d+\n$/);
  });
});

describe('threads, fork, exec and signals', () => {
  it.each(['madvise', 'prctl'] as const)('a threaded program that forks, execs and allocates in a signal handler runs to the end (%s)', (mode) => {
    const result = run(buildFixture('threads_fork'), preloadEnv(mode));
    expect(result.signal).toBeNull();
    expect(result.stdout).toBe('ok\n');
    expect(result.status).toBe(0);
  });
});

describe('musl', () => {
  it('a musl-built library works in a musl-linked program', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    requireTool(ctx, 'musl-gcc');
    const library = buildLibrary({ cc: 'musl-gcc' });
    const errnoResult = run(buildFixture('errno_hooks', { cc: 'musl-gcc' }), preloadEnv('madvise', library));
    expect(errnoResult.stdout).toMatch(/^ok \d+\n$/);
    const running = await startWorkload(buildWorkload({ cc: 'musl-gcc' }), [], preloadEnv('madvise', library));
    try {
      expect((await coverageReaching(running.child.pid!, 0.95)).ratio).toBeGreaterThanOrEqual(0.95);
    } finally {
      expect(await running.finish()).toBe(0);
    }
  });
});

describe('bad environment values', () => {
  it.each([
    ['KSM_PRELOAD_MODE', 'banana'],
    ['KSM_PRELOAD_MIN_BYTES', '-5'],
    ['KSM_PRELOAD_MIN_BYTES', '12abc'],
    ['KSMP_MERGE_THRESHOLD', 'lots'],
    ['KSM_PRELOAD_VERBOSE', 'maybe'],
  ])('%s=%s: one stderr line naming it, and the program runs on', (name, value) => {
    const env = preloadEnv('auto', buildLibrary(), { [name]: value });
    if (name === 'KSM_PRELOAD_MODE') env.KSM_PRELOAD_MODE = value;
    const result = run(buildFixture('hello'), env);
    expect(result.stdout).toBe('hello o\n');
    expect(result.status).toBe(0);
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${name}='${value}'`);
    expect(lines[0]).toMatch(/using \S+/);
  });

  it('KSM_PRELOAD_VERBOSE=1 prints the mode and why at start, and a summary at exit', () => {
    const result = run(buildFixture('hello'), preloadEnv('madvise', buildLibrary(), { KSM_PRELOAD_VERBOSE: '1' }));
    expect(result.stdout).toBe('hello o\n');
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines[0]).toMatch(/^ksm-preload: pid \d+: mode madvise \(KSM_PRELOAD_MODE=madvise\)/);
    expect(lines[1]).toMatch(/exit summary, mode madvise: \d+ mappings marked \([\d.]+ MiB\)/);
  });
});

describe('a kernel that refuses prctl', () => {
  it('auto falls back to madvise, and prctl mode runs the program unmarked', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const library = buildLibrary();
    const auto = await startWorkload(buildWorkload(), [], preloadEnv('auto', library, { KSM_PRELOAD_TEST_NO_PRCTL: '1' }));
    try {
      expect((await coverageReaching(auto.child.pid!, 0.95)).ratio).toBeGreaterThanOrEqual(0.95);
      expect(readMergeAny(auto.child.pid!)).toBe('no');
    } finally {
      expect(await auto.finish()).toBe(0);
    }
    const refused = await startWorkload(buildWorkload(), [], preloadEnv('prctl', library, { KSM_PRELOAD_TEST_NO_PRCTL: '1' }));
    try {
      expect(coverage(refused.child.pid!).ratio).toBeLessThan(0.01);
    } finally {
      expect(await refused.finish()).toBe(0);
    }
  });
});

function readMergeAny(pid: number): string | undefined {
  return /ksm_merge_any: (\w+)/.exec(readFileSync(`/proc/${pid}/ksm_stat`, 'utf8'))?.[1];
}
