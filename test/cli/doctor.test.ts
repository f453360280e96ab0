import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ksmSupport } from '../../lib/diagnosis/support.js';
import { requireOrSkip, ksmUnavailable, probedKernel } from '../helpers/e2e.js';
import { MODERN_TREE, READ_ONLY_FOR_ROOT, runBin, runInProcess, useFakeSysfs } from './harness.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
  features?: Record<string, { available: boolean; probed: boolean; source: string; reason?: string }>;
}

const ALL = ['CONFIG_KSM', 'ksmd', 'container', 'sysfs writable', 'THP', 'prctl', 'exec survival', 'kernel features', 'addon', 'preload library', 'launcher'];

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

describe('ksm doctor on this machine', () => {
  it('runs every check and agrees with ksmSupport()', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const result = await runInProcess(['doctor', '--json']);
    const checks: Check[] = JSON.parse(result.stdout);
    expect(checks.map((check) => check.name)).toEqual(ALL);
    const byName = Object.fromEntries(checks.map((check) => [check.name, check]));
    const support = ksmSupport();
    expect(byName.CONFIG_KSM?.status).toBe('ok');
    expect(byName.ksmd?.status).toBe(support.ksmd.running ? 'ok' : 'warn');
    const kernel = probedKernel();
    expect(byName.prctl?.status).toBe(kernel.prctl ? 'ok' : 'warn');
    expect(byName['exec survival']?.status).toBe(kernel.execSurvival ? 'ok' : 'warn');
    expect(byName['exec survival']?.status).toBe(support.execSurvival.expected ? 'ok' : 'warn');
    const features = byName['kernel features']?.features ?? {};
    expect([features.prctl?.available, features.execSurvival?.available, features.procmapQuery?.available]).toEqual([kernel.prctl, kernel.execSurvival, kernel.procmapQuery]);
    expect(features.generalProfit?.available).toBe(existsSync('/sys/kernel/mm/ksm/general_profit'));
    expect(byName['kernel features']?.detail).toContain(`general_profit ${existsSync('/sys/kernel/mm/ksm/general_profit') ? 'yes' : 'no'}`);
    expect(byName['kernel features']?.detail).toContain(`PROCMAP_QUERY ${kernel.procmapQuery ? 'yes' : 'no'}`);
    expect(byName['sysfs writable']?.status).toBe('ok'); // root, writable /sys
    expect(byName.container?.status).toBe(existsSync('/.dockerenv') || existsSync('/run/.containerenv') ? 'warn' : byName.container?.status);
    expect(byName['preload library']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/loads \(glibc\)/) });
    for (const check of checks.filter((c) => c.status !== 'ok')) expect(check.fix, check.name).toBeTruthy();
    expect(result.code).toBe(checks.some((check) => check.status === 'fail') ? 1 : 0);
  });

  it('prints ok/warn/fail lines with the fix under each problem (spawned)', () => {
    const result = runBin(['doctor']);
    const lines = result.stdout.trim().split('\n');
    for (const line of lines) expect(line).toMatch(/^(ok  |warn|fail)  [\w ]+: |^      fix: /);
  });

  it('fails the addon check without the addon', () => {
    const result = runBin(['doctor', '--json'], { env: { ...process.env, KSM_PRELOAD_NO_ADDON: '1' } });
    expect(result.code).toBe(1);
    const addon = (JSON.parse(result.stdout) as Check[]).find((check) => check.name === 'addon');
    expect(addon).toMatchObject({ status: 'fail', detail: expect.stringMatching(/KSM_PRELOAD_NO_ADDON/), fix: expect.stringMatching(/npm rebuild/) });
  });
});

describe('ksm doctor on fake sysfs trees', () => {
  it('fails CONFIG_KSM when the KSM folder is missing, and exits 1', async () => {
    const fake = useFakeSysfs({});
    cleanup = fake.cleanup;
    process.env.KSM_SYSFS_ROOT = `${fake.root}/absent`;
    const result = await runInProcess(['doctor']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^fail  CONFIG_KSM: .*missing.*\n      fix: boot a kernel built with CONFIG_KSM=y$/m);
  });

  it('warns when the knobs are not writable, even for root', async () => {
    cleanup = useFakeSysfs({ ...MODERN_TREE, run: READ_ONLY_FOR_ROOT }).cleanup;
    const checks: Check[] = JSON.parse((await runInProcess(['doctor', '--json'])).stdout);
    expect(checks.find((check) => check.name === 'sysfs writable')).toMatchObject({ status: 'warn', fix: expect.any(String) });
  });
});
