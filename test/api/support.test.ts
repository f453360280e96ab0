import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type KsmSupport, ksmSupport } from '../../lib/diagnosis/support.js';
import { setStrict } from '../../lib/core/capability.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';

/** Every check that says no must say why. */
function expectReasonForEveryNo(support: KsmSupport): void {
  const answers: Array<[string, boolean, string | undefined]> = [
    ['supported', support.supported, support.reason],
    ['ksm', support.ksm.present, support.ksm.reason],
    ['ksmd', support.ksmd.running, support.ksmd.reason],
    ['prctl', support.prctl.available, support.prctl.reason],
    ['execSurvival', support.execSurvival.expected, support.execSurvival.reason],
    ['addon', support.addon.loaded, support.addon.reason],
    ['preloadLibrary', support.preloadLibrary.path !== undefined, support.preloadLibrary.reason],
    ['launcher', support.launcher.path !== undefined, support.launcher.reason],
  ];
  for (const [name, yes, reason] of answers) {
    if (yes) expect(reason, name).toBeUndefined();
    else expect(reason, name).toMatch(/\w{4}/);
  }
}

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
    expectReasonForEveryNo(support);
  });

  it('explains a kernel without KSM', () => {
    const root = mkdtempSync(join(tmpdir(), 'ksm-support-'));
    try {
      vi.stubEnv('KSM_SYSFS_ROOT', join(root, 'missing'));
      const support = ksmSupport();
      expect(support.supported).toBe(false);
      expect(support.reason).toMatch(/missing: the kernel was built without CONFIG_KSM/);
      expect(support.ksm).toEqual({ present: false, reason: expect.stringContaining(join(root, 'missing')) });
      expect(support.ksmd.running).toBe(false);
      expect(support.prctl.available).toBe(false);
      expect(support.execSurvival.expected).toBe(false);
      expectReasonForEveryNo(support);
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
    expectReasonForEveryNo(support);
  });

  it('reports the preload library and launcher paths, or why they are missing', () => {
    const { preloadLibrary, launcher } = ksmSupport();
    for (const file of [preloadLibrary, launcher]) {
      if (file.path) expect(() => readFileSync(file.path as string)).not.toThrow();
      else expect(file.reason).toMatch(/was not built/);
    }
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
