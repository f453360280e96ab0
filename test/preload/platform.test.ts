import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { requireOrSkip } from '../helpers/e2e.js';
import { requireTool } from '../helpers/tools.js';
import { repoRoot } from './native-build.js';

// Supported: 64-bit Linux on x86_64 and aarch64 (glibc or musl). Any other target
// must fail to build with a clear #error rather than compute wrong results.

const common = join(repoRoot, 'native', 'common');
const preloadSources = [
  ...readdirSync(join(repoRoot, 'native', 'preload')).filter((f) => f.endsWith('.c')).map((f) => join(repoRoot, 'native', 'preload', f)),
  join(common, 'maps_scan.c'),
];
const out = mkdtempSync(join(tmpdir(), 'ksm-platform-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function compile(compiler: string, args: string[]): { status: number | null; stderr: string } {
  const result = spawnSync(compiler, args, { encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr ?? '' };
}

/** Why `gcc -m32` cannot build a program here, or undefined when it can. */
function noMultilib(): string | undefined {
  const result = spawnSync('gcc', ['-m32', '-x', 'c', '-o', join(out, 'm32-probe'), '-'], { input: 'int main(void) { return 0; }\n', encoding: 'utf8' });
  return result.status === 0 ? undefined : 'gcc -m32 cannot build here (Debian package gcc-12-multilib)';
}

describe('supported targets', () => {
  it('a 32-bit build (gcc -m32) of the preload library stops at the #error', (ctx) => {
    requireOrSkip(ctx, noMultilib());
    const result = compile('gcc', ['-m32', '-std=gnu11', '-O2', '-fPIC', '-shared', `-I${common}`, '-o', join(out, 'lib32.so'), ...preloadSources, '-ldl']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('#error "ksm-preload needs a 64-bit (LP64) build');
  });

  it('x32 (gcc -mx32: x86_64 with 32-bit pointers) stops at the #error (the guard alone: no x32 C library needed)', () => {
    const result = compile('gcc', ['-mx32', '-fsyntax-only', '-x', 'c', join(common, 'ksm_platform.h')]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('needs a 64-bit (LP64) build');
  });

  it('another 64-bit architecture stops at the #error (the guard alone, with the target macros replaced)', () => {
    const result = compile('gcc', ['-fsyntax-only', '-x', 'c', '-U__x86_64__', '-U__aarch64__', '-D__riscv=1', join(common, 'ksm_platform.h')]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('supports x86_64 and aarch64 only');
  });

  it('x86_64 builds without the guard firing', () => {
    const result = compile('gcc', ['-fsyntax-only', '-x', 'c', join(common, 'ksm_platform.h')]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('aarch64: the preload library cross-compiles cleanly (-Wall -Wextra -Werror)', (ctx) => {
    requireTool(ctx, 'aarch64-linux-gnu-gcc');
    const library = join(out, 'libksm_preload-aarch64.so');
    const result = compile('aarch64-linux-gnu-gcc', [
      '-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-fvisibility=hidden', '-fPIC', '-shared', '-D_FILE_OFFSET_BITS=64',
      `-I${common}`, '-o', library, ...preloadSources, '-ldl', '-lpthread', '-Wl,-z,now',
    ]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const header = spawnSync('readelf', ['-h', library], { encoding: 'utf8' }).stdout;
    expect(header).toMatch(/Machine:\s+AArch64/);
  });
});
