import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_MODE, MODES } from '../../lib/core/facts.js';
import { validatePreloadPath } from '../../lib/deploy/snippets.js';
import { buildLauncher, repoRoot } from '../preload/native-build.js';

// native/common/ksm_facts.h is the one source of what C and TypeScript share. These
// tests check that lib/core/facts.ts is generated from it, and that the binaries built
// from the header and the TypeScript built from the generated module behave alike.

const CORPUS = [
  ...(JSON.parse(readFileSync(join(repoRoot, 'test/fixtures/reliability/corpora/snippet-paths.json'), 'utf8')) as string[]),
  '/opt/a\\b/lib.so',
  '/opt/a^b/lib.so',
  '/opt/a]b/lib.so',
];

function tsAccepts(path: string): boolean {
  try {
    validatePreloadPath(path);
    return true;
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return false;
  }
}

describe('facts shared by C and TypeScript', () => {
  it('lib/core/facts.ts is what scripts/gen-facts.mjs makes of native/common/ksm_facts.h', () => {
    const check = spawnSync(process.execPath, [join(repoRoot, 'scripts/gen-facts.mjs'), '--check'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('ksm-exec and validatePreloadPath accept and refuse the same library paths', () => {
    const launcher = buildLauncher();
    const verdicts = CORPUS.filter((path) => !path.includes('\0')).map((path) => {
      const result = spawnSync(launcher, ['--mode', 'madvise', '--lib', path, '--', '/bin/true'], { encoding: 'utf8' });
      return { path, c: !result.stderr.includes('LD_PRELOAD cannot carry'), ts: tsAccepts(path) };
    });
    expect(verdicts.filter((v) => v.c)).not.toHaveLength(0);
    expect(verdicts.filter((v) => !v.c)).not.toHaveLength(0);
    expect(verdicts.filter((v) => v.c !== v.ts)).toEqual([]);
  });

  it('ksm-exec takes exactly the modes the TypeScript side offers, from --mode and from the environment', () => {
    const launcher = buildLauncher();
    for (const mode of MODES) {
      const flag = spawnSync(launcher, ['--mode', mode, '--', '/bin/true'], { encoding: 'utf8' });
      expect({ mode, status: flag.status, stderr: flag.stderr }).toEqual({ mode, status: 0, stderr: '' });
      const env = spawnSync(launcher, ['--', '/bin/true'], { encoding: 'utf8', env: { ...process.env, [ENV_MODE]: mode } });
      expect({ mode, status: env.status, stderr: env.stderr }).toEqual({ mode, status: 0, stderr: '' });
    }
    const unknown = spawnSync(launcher, ['--mode', 'fast', '--', '/bin/true'], { encoding: 'utf8' });
    expect(unknown.status).toBe(125);
    expect(unknown.stderr).toMatch(/--mode must be/);
    const unknownEnv = spawnSync(launcher, ['--', '/bin/true'], { encoding: 'utf8', env: { ...process.env, [ENV_MODE]: 'fast' } });
    expect(unknownEnv.stderr).toMatch(new RegExp(`${ENV_MODE}`));
  });
});
