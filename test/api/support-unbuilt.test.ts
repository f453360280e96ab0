import { describe, expect, it, vi } from 'vitest';
import { launcher, preloadLibrary } from '../../lib/core/paths.js';
import { ksmSupport } from '../../lib/diagnosis/support.js';

// An install whose native build failed: no file of the build exists anywhere
// (vi.mock is hoisted above the imports).
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const built = /\/(libksm_preload\.so|ksm-exec)$/;
  return { ...fs, existsSync: (path: string) => !built.test(String(path)) && fs.existsSync(path) };
});

describe('ksmSupport without a native build', () => {
  it('names every place it looked for the library and the launcher, and the fix', () => {
    const support = ksmSupport();
    for (const [file, name] of [[support.preloadLibrary, 'libksm_preload.so'], [support.launcher, 'ksm-exec']] as const) {
      expect(file.path).toBeUndefined();
      expect(file.reason).toMatch(new RegExp(`^${name.replace('.', '\\.')} was not built \\(looked in .*prebuilds/linux-.*build/Release/${name.replace('.', '\\.')}\\); run \`npm rebuild ksm-preload\``));
    }
    expect(preloadLibrary()).toEqual(support.preloadLibrary);
    expect(launcher()).toEqual(support.launcher);
  });
});
