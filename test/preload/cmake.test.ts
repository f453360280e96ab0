import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/tools.js';
import { repoRoot } from './native-build.js';

describe('the standalone CMake build', () => {
  it('builds and installs lib64/libksm_preload.so and bin/ksm-exec, which finds the library', (ctx) => {
    requireTool(ctx, 'cmake');
    const work = mkdtempSync(join(tmpdir(), 'ksm-cmake-'));
    ctx.onTestFinished(() => rmSync(work, { recursive: true, force: true }));
    const build = join(work, 'build');
    const prefix = join(work, 'usr');
    execFileSync('cmake', ['-S', repoRoot, '-B', build, '-DCMAKE_INSTALL_LIBDIR=lib64'], { stdio: 'pipe' });
    execFileSync('cmake', ['--build', build, '-j2'], { stdio: 'pipe' });
    execFileSync('cmake', ['--install', build, '--prefix', prefix], { stdio: 'pipe' });
    const library = join(prefix, 'lib64', 'libksm_preload.so');
    expect(existsSync(library)).toBe(true);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.LD_PRELOAD;
    delete env.KSM_PRELOAD_LIB;
    const result = spawnSync(join(prefix, 'bin', 'ksm-exec'), ['--mode', 'madvise', 'sh', '-c', 'echo "$LD_PRELOAD"'], { env, encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(`${library}\n`);
  });
});
