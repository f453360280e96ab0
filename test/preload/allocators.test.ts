import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initSnippet } from '../../lib/deploy/snippets.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { requireFile } from '../helpers/tools.js';
import { buildLauncher, buildLibrary, buildWorkload, coverageReaching, preloadEnv, python3, startWorkload, workloadsDir } from './native-build.js';

// A program that already preloads another malloc gets the library through a snippet or
// ksm-exec. Both put the library first in LD_PRELOAD: the loader binds malloc to the
// first object that defines it, so an allocator listed ahead would take every call and
// the library's hooks would never see one. Coverage must stay at 95 % all the same.

const ALLOCATORS = [
  ['jemalloc', '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', 'libjemalloc2'],
  ['mimalloc', '/usr/lib/x86_64-linux-gnu/libmimalloc.so.2', 'libmimalloc2.0'],
] as const;

const WORKLOADS = {
  c: () => [buildWorkload(), []] as const,
  python3: () => [python3, [join(workloadsDir, 'workload.py')]] as const,
};

/** The program's environment: another allocator preloaded, no library yet. */
function withAllocator(allocator: string): NodeJS.ProcessEnv {
  return { ...preloadEnv('none'), LD_PRELOAD: allocator };
}

/** Coverage of the workload once it is ready, with the LD_PRELOAD it runs with. */
async function coverageThrough(command: string, args: readonly string[], env: NodeJS.ProcessEnv) {
  const running = await startWorkload(command, [...args], env);
  try {
    const reading = await coverageReaching(running.child.pid!, 0.95);
    const environ = readFileSync(`/proc/${running.child.pid}/environ`, 'utf8').split('\0');
    const ldPreload = environ.find((entry) => entry.startsWith('LD_PRELOAD='))?.slice('LD_PRELOAD='.length);
    return { ...reading, ldPreload, stderr: running.stderr() };
  } finally {
    await running.finish();
  }
}

describe.each(ALLOCATORS)('with %s preloaded ahead', (_name, allocator, debianPackage) => {
  describe.each(Object.keys(WORKLOADS) as (keyof typeof WORKLOADS)[])('a %s workload', (workload) => {
    it('reaches 95 % coverage in madvise mode through the sysv snippet, the library first', async (ctx) => {
      requireOrSkip(ctx, ksmUnavailable());
      requireFile(ctx, allocator, debianPackage);
      const [command, args] = WORKLOADS[workload]();
      const snippet = initSnippet({ format: 'sysv', libPath: buildLibrary(), mode: 'madvise' });
      const script = `${snippet}\ncase "$LD_PRELOAD" in ${buildLibrary()}:${allocator}) ;; *) echo "order: $LD_PRELOAD" >&2; exit 3;; esac\nexec "$@"`;
      const reading = await coverageThrough('sh', ['-c', script, 'sh', command, ...args], withAllocator(allocator));
      expect(reading.stderr).toBe('');
      expect(reading.ldPreload).toBe(`${buildLibrary()}:${allocator}`);
      expect(reading.ratio).toBeGreaterThanOrEqual(0.95);
    });

    it('reaches 95 % coverage through ksm-exec --mode madvise, the library first', async (ctx) => {
      requireOrSkip(ctx, ksmUnavailable());
      requireFile(ctx, allocator, debianPackage);
      const [command, args] = WORKLOADS[workload]();
      const reading = await coverageThrough(buildLauncher(), ['--mode', 'madvise', '--', command, ...args], withAllocator(allocator));
      expect(reading.ldPreload).toMatch(new RegExp(`^/[^:]+/libksm_preload\\.so:${allocator.replace(/\./g, '\\.')}$`));
      expect(reading.ratio).toBeGreaterThanOrEqual(0.95);
    });
  });
});
