import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');

/** A copy of the package without node_modules, where the install step cannot build. */
function packageWithoutToolchain(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-install-'));
  for (const entry of ['scripts', 'native', 'dist', 'binding.gyp', 'package.json']) {
    cpSync(join(root, entry), join(dir, entry), { recursive: true });
  }
  return dir;
}

describe('the install step', () => {
  const dir = packageWithoutToolchain();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('succeeds without node-gyp or a compiler and records why the build failed', () => {
    const result = spawnSync(process.execPath, [join(dir, 'scripts', 'install.js')], {
      cwd: dir,
      env: { PATH: '/nonexistent', HOME: dir },
      encoding: 'utf8',
    });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/the native build failed/);
    const status = JSON.parse(readFileSync(join(dir, 'build', 'ksm-build-status.json'), 'utf8'));
    expect(status.ok).toBe(false);
    expect(status.reason).toMatch(/node-gyp/);
  });

  it('makes the library report that reason instead of throwing on import', () => {
    const probe = `const ksm = require(${JSON.stringify(join(dir, 'dist', 'cjs', 'core', 'addon.js'))});
      process.stdout.write(JSON.stringify(ksm.loadNative()));`;
    const result = spawnSync(process.execPath, ['-e', probe], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(result.status).toBe(0);
    const load = JSON.parse(result.stdout) as { reason?: string };
    expect(load.reason).toMatch(/^the native build failed at install: .*node-gyp/);
  });
});

describe('prebuilds keyed by C library', () => {
  const dir = packageWithoutToolchain();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const arch = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
  const NATIVE_FILES = ['libksm_preload.so', 'ksm-exec', 'ksm-attach'];

  function prebuild(libc: string): void {
    mkdirSync(join(arch, libc), { recursive: true });
    for (const file of NATIVE_FILES) writeFileSync(join(arch, libc, file), `${libc} build of ${file}\n`);
  }

  function install(): { ok: boolean; source?: string } {
    const result = spawnSync(process.execPath, [join(dir, 'scripts', 'install.js')], { cwd: dir, env: { PATH: '/nonexistent', HOME: dir }, encoding: 'utf8' });
    expect(result.status).toBe(0);
    return JSON.parse(readFileSync(join(dir, 'build', 'ksm-build-status.json'), 'utf8'));
  }

  function builtPaths(): { library?: string; launcher?: string } {
    const probe = `const paths = require(${JSON.stringify(join(dir, 'dist', 'cjs', 'core', 'paths.js'))});
      process.stdout.write(JSON.stringify({ library: paths.preloadLibrary().path, launcher: paths.launcher().path }));`;
    return JSON.parse(spawnSync(process.execPath, ['-e', probe], { cwd: dir, encoding: 'utf8' }).stdout);
  }

  it('a glibc Node never takes a musl prebuild: the install builds, and the library looks elsewhere', () => {
    prebuild('musl');
    expect(install()).toMatchObject({ ok: false });
    expect(builtPaths()).toEqual({});
  });

  it('takes the prebuild of its own C library', () => {
    prebuild('glibc');
    expect(install()).toMatchObject({ ok: true, source: 'prebuild' });
    expect(builtPaths()).toEqual({ library: join(arch, 'glibc', 'libksm_preload.so'), launcher: join(arch, 'glibc', 'ksm-exec') });
  });
});
