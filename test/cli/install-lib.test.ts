import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { preloadLibrary } from '../../lib/core/paths.js';
import { runBin, runInProcess } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'ksm-cli-install-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The libraries a program really loaded, from its own /proc/self/maps. */
function loadedWith(preload: string): string {
  return spawnSync('/usr/bin/python3', ['-c', "print(open('/proc/self/maps').read())"], {
    env: { ...process.env, LD_PRELOAD: preload, KSM_PRELOAD_MODE: 'off' },
    encoding: 'utf8',
  }).stdout;
}

describe('ksm install-lib', () => {
  it('copies the library into --prefix, prints the path, and programs can preload it from there', () => {
    const result = runBin(['install-lib', '--prefix', work]);
    expect(result.code).toBe(0);
    const installed = result.stdout.trim();
    expect(installed).toBe(join(work, 'libksm_preload.so'));
    expect(readFileSync(installed).equals(readFileSync(preloadLibrary().path ?? ''))).toBe(true);
    expect(statSync(installed).mode & 0o777).toBe(0o755);
    expect(loadedWith(installed)).toContain(installed);
    // Installing again replaces it (by rename, so running programs keep their copy).
    expect(runBin(['install-lib', '--prefix', work]).code).toBe(0);
  });

  it.each([
    [['--prefix', 'relative/dir'], /must be an absolute path/],
    [['--prefix', '/tmp/has space'], /cannot go into LD_PRELOAD: it contains a space/],
  ])('%j is a usage error', async (args, message) => {
    const result = await runInProcess(['install-lib', ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('reports a folder it cannot write', async () => {
    const result = await runInProcess(['install-lib', '--prefix', '/proc/sys/kernel']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^ksm: installPreloadLibrary: cannot install \/proc\/sys\/kernel\/libksm_preload.so/);
  });
});
