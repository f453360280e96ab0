import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ksmSupport } from '../../lib/diagnosis/support.js';
import { setStrict } from '../../lib/core/capability.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';

function fakeKsmTree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'ksm-support-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(root, name), content);
  return root;
}

describe('ksmSupport', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('describes this machine as it is', (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    const support = ksmSupport();
    expect(support).toMatchObject({
      platform: 'linux',
      kernel: release(),
      supported: true,
      ksm: { present: true },
      prctl: { available: true, probed: true },
      execSurvival: { expected: true },
      addon: { loaded: true },
    });
    expect(support.ksmd.running).toBe(readFileSync('/sys/kernel/mm/ksm/run', 'utf8').trim() === '1');
    expect(support.reason).toBeUndefined();
    expect(support.preloadLibrary).toEqual({ path: expect.stringMatching(/\/libksm_preload\.so$/) });
    expect(support.launcher).toEqual({ path: expect.stringMatching(/\/ksm-exec$/) });
  });

  it('explains a kernel without KSM', () => {
    const root = mkdtempSync(join(tmpdir(), 'ksm-support-'));
    try {
      vi.stubEnv('KSM_SYSFS_ROOT', join(root, 'missing'));
      const support = ksmSupport();
      expect(support.supported).toBe(false);
      expect(support.reason).toMatch(/missing: the kernel was built without CONFIG_KSM/);
      expect(support.ksm).toEqual({ present: false, reason: expect.stringContaining(join(root, 'missing')) });
      expect(support.ksmd).toEqual({ running: false, reason: expect.stringContaining(join(root, 'missing')) });
      expect(support.prctl).toMatchObject({ available: false, reason: expect.stringMatching(/\w{4}/) });
      expect(support.execSurvival).toMatchObject({ expected: false, reason: expect.stringMatching(/\w{4}/) });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  for (const [run, why] of [
    ['0', /ksmd is stopped \(.*run is 0\): as root, `echo 1 > .*run`/],
    ['2', /stopped and has unmerged everything/],
    ['banana', /unexpected value "banana"/],
  ] as const) {
    it(`explains ksmd with run = ${run}`, () => {
      const root = fakeKsmTree({ run: `${run}\n` });
      try {
        vi.stubEnv('KSM_SYSFS_ROOT', root);
        const { ksmd } = ksmSupport();
        expect(ksmd.running).toBe(false);
        expect(ksmd.reason).toMatch(why);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  }

  it('sees ksmd running', () => {
    const root = fakeKsmTree({ run: '1\n' });
    try {
      vi.stubEnv('KSM_SYSFS_ROOT', root);
      expect(ksmSupport().ksmd).toEqual({ running: true });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('honours KSM_PRELOAD_TEST_NO_PRCTL=1 as a kernel refusing prctl', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    vi.stubEnv('KSM_PRELOAD_TEST_NO_PRCTL', '1');
    const support = ksmSupport();
    expect(support.prctl).toEqual({ available: false, probed: true, reason: expect.stringContaining('KSM_PRELOAD_TEST_NO_PRCTL=1') });
    expect(support.execSurvival).toEqual({ expected: false, reason: expect.stringContaining('KSM_PRELOAD_TEST_NO_PRCTL=1') });
    expect(support.supported).toBe(true);
    expect(support.reason).toBeUndefined();
  });

  it('never throws, even on a broken sysfs tree', () => {
    const root = fakeKsmTree({});
    try {
      mkdirSync(join(root, 'run')); // a folder where a file should be
      vi.stubEnv('KSM_SYSFS_ROOT', root);
      expect(ksmSupport().ksmd).toEqual({ running: false, reason: expect.stringMatching(/cannot read/) });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('setStrict', () => {
  it('accepts booleans only', () => {
    expect(() => setStrict('yes' as never)).toThrow(TypeError);
    expect(() => setStrict(1 as never)).toThrow(/strict must be a boolean/);
    setStrict(false);
  });
});
