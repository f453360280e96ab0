import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCached, fixture, fixtureDir } from './support/native-build.js';
import { cleanEnv, explain, libraryPath, percent, runHeld, type Mode } from './support/run.js';
import { requireFile } from '../helpers/tools.js';

// RELIABILITY.md §5: the library among other libraries. dlopen/dlclose of
// libraries that allocate in their constructors; the library first and last in
// LD_PRELOAD; stacked with another malloc (jemalloc, mimalloc) in both orders.

const ROUNDS = 200;
const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
const MIMALLOC = '/usr/lib/x86_64-linux-gnu/libmimalloc.so.2';

function ctorLibrary(tag: number): string {
  return buildCached(`ctor_lib_${tag}`, {
    compiler: 'gcc',
    sources: [join(fixtureDir, 'ctor_lib.c')],
    flags: ['-O2', '-Wall', '-Wextra', `-DLIB_TAG=${tag}`],
    kind: 'shared',
  });
}

/** Runs dlopen_host with LD_PRELOAD built by `preload` from the library's path, checks the result and the marking. */
async function expectLoads(mode: Mode, preload: (library: string) => string[]): Promise<string> {
  const libraries = [ctorLibrary(3), ctorLibrary(7)];
  const ldPreload = preload(libraryPath()).join(':');
  const result = await runHeld(fixture('dlopen_host'), [String(ROUNDS), ...libraries], {
    env: cleanEnv({ LD_PRELOAD: ldPreload, KSM_PRELOAD_MODE: mode }),
    timeoutMs: 60_000,
  });
  expect(result.timedOut, 'hung').toBe(false);
  expect(result.status, explain(result)).toBe(0);
  expect(result.stdout.toString()).toBe(`rounds=${ROUNDS} libraries=2 bad=0\n`);
  expect(result.held.mergeableKb, `${mode}: nothing marked with LD_PRELOAD=${ldPreload}`).toBeGreaterThan(0);
  return `${percent(result.held.ratio)} of ${result.held.anonymousKb} kB`;
}

describe('loading: dlopen/dlclose and LD_PRELOAD neighbours', () => {
  const modes: Mode[] = ['madvise', 'prctl'];
  for (const mode of modes) {
    it(`dlopen/dlclose ${ROUNDS}× two libraries that allocate in constructors, library first and last in LD_PRELOAD (${mode})`, async () => {
      // A neighbour preload that allocates in its constructor too.
      const neighbour = ctorLibrary(11);
      const first = await expectLoads(mode, (library) => [library, neighbour]);
      const last = await expectLoads(mode, (library) => [neighbour, library]);
      console.log(`dlopen_host [${mode}]: library first ${first}, last ${last}`);
    });

    for (const [name, path, debianPackage] of [
      ['jemalloc', JEMALLOC, 'libjemalloc2'],
      ['mimalloc', MIMALLOC, 'libmimalloc2.0'],
    ] as const) {
      it(`stacked with ${name}, both orders (${mode})`, async (ctx) => {
        requireFile(ctx, path, debianPackage);
        const before = await expectLoads(mode, (library) => [library, path]);
        const after = await expectLoads(mode, (library) => [path, library]);
        console.log(`dlopen_host + ${name} [${mode}]: library before ${before}, after ${after}`);
      });
    }
  }
});
