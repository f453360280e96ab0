// kernelFeatures() against the kernel itself: the calls against a probe of our own
// (Python, in test/helpers/e2e.ts), the files against the files.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { launcher } from '../../lib/core/paths.js';
import { KSM_STAT_FIELDS, kernelFeatures, type KernelFeature, type KernelFeatures } from '../../lib/kernel/features.js';
import { MODERN_TREE, useFakeSysfs } from '../cli/harness.js';
import { ksmUnavailable, probedKernel, requireOrSkip } from '../helpers/e2e.js';

const KSM = '/sys/kernel/mm/ksm';
const SYSFS_FEATURES: Array<[keyof KernelFeatures, string]> = [
  ['ksm', 'run'],
  ['generalProfit', 'general_profit'],
  ['ksmZeroPages', 'ksm_zero_pages'],
  ['smartScan', 'smart_scan'],
  ['advisor', 'advisor_mode'],
];

/** Why the probe process cannot run here. */
function probeUnavailable(): string | undefined {
  return ksmUnavailable() ?? (launcher().reason && `the ksm-exec launcher, which probes the kernel, is missing: ${launcher().reason}`);
}

function expectReasonForEveryNo(features: KernelFeatures): void {
  for (const [name, feature] of Object.entries(features) as Array<[string, KernelFeature]>) {
    if (feature.available) expect(feature.reason, name).toBeUndefined();
    else expect(feature.reason, name).toMatch(/\w{4}/);
    expect(feature.source, name).toMatch(/\w{4}/);
  }
}

let cleanup: (() => void) | undefined;
afterEach(() => {
  vi.unstubAllEnvs();
  cleanup?.();
  cleanup = undefined;
});

describe('kernelFeatures on this kernel', () => {
  it('agrees with an independent probe on prctl, its survival across exec and PROCMAP_QUERY', (ctx) => {
    requireOrSkip(ctx, probeUnavailable());
    const kernel = probedKernel();
    const features = kernelFeatures();
    expect({ prctl: features.prctl.available, execSurvival: features.execSurvival.available, procmapQuery: features.procmapQuery.available }).toEqual(kernel);
    expect([features.prctl.probed, features.execSurvival.probed, features.procmapQuery.probed]).toEqual([true, true, true]);
    expectReasonForEveryNo(features);
  });

  it('finds exactly the sysfs and /proc files this kernel has, and the fields of its ksm_stat', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const features = kernelFeatures();
    for (const [key, file] of SYSFS_FEATURES) expect(features[key].available, file).toBe(existsSync(join(KSM, file)));
    expect(features.ksmMergingPages.available).toBe(existsSync('/proc/self/ksm_merging_pages'));
    const fields = existsSync('/proc/self/ksm_stat')
      ? readFileSync('/proc/self/ksm_stat', 'utf8').split('\n').filter(Boolean).map((line) => line.split(/[:\s]/)[0])
      : [];
    expect(features.ksmStat.fields).toEqual(fields);
    expect(features.ksmStat.missing).toEqual(KSM_STAT_FIELDS.filter((field) => !fields.includes(field)));
  });

  it('ksm-exec --probe-kernel answers one line per call, and honours each test switch', (ctx) => {
    requireOrSkip(ctx, probeUnavailable());
    const kernel = probedKernel();
    const probe = (env: Record<string, string>): string =>
      spawnSync(launcher().path ?? '', ['--probe-kernel'], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' }).stdout;
    const survival = kernel.prctl ? (kernel.execSurvival ? 'kept' : 'lost') : 'none';
    expect(probe({})).toBe(`prctl ${kernel.prctl ? 0 : 22}\nexec-survival ${survival}\nprocmap-query ${kernel.procmapQuery ? 0 : 25}\n`);
    expect(probe({ KSM_PRELOAD_TEST_NO_PRCTL: '1' })).toMatch(/^prctl 22\nexec-survival none\n/);
    expect(probe({ KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC: '1' })).toContain(`exec-survival ${kernel.prctl ? 'lost' : 'none'}\n`);
    expect(probe({ KSM_PRELOAD_TEST_NO_PROCMAP_QUERY: '1' })).toMatch(/\nprocmap-query 25\n$/);
  });
});

describe('kernelFeatures under the test switches', () => {
  it('KSM_PRELOAD_TEST_NO_PRCTL=1: no prctl, so nothing survives exec', () => {
    vi.stubEnv('KSM_PRELOAD_TEST_NO_PRCTL', '1');
    const features = kernelFeatures();
    expect(features.prctl).toMatchObject({ available: false, reason: expect.stringContaining('KSM_PRELOAD_TEST_NO_PRCTL=1') });
    expect(features.execSurvival).toMatchObject({ available: false, reason: expect.stringContaining('without prctl') });
  });

  it('KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC=1: prctl as the kernel has it, but the flag is lost at exec', (ctx) => {
    requireOrSkip(ctx, probeUnavailable());
    vi.stubEnv('KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', '1');
    const features = kernelFeatures();
    expect(features.prctl.available).toBe(probedKernel().prctl);
    expect(features.execSurvival.available).toBe(false);
    expect(features.execSurvival.reason).toMatch(probedKernel().prctl ? /KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC=1/ : /without prctl/);
  });

  it('KSM_PRELOAD_TEST_NO_PROCMAP_QUERY=1: no PROCMAP_QUERY', () => {
    vi.stubEnv('KSM_PRELOAD_TEST_NO_PROCMAP_QUERY', '1');
    expect(kernelFeatures().procmapQuery).toMatchObject({ available: false, reason: expect.stringContaining('KSM_PRELOAD_TEST_NO_PROCMAP_QUERY=1') });
  });
});

describe('kernelFeatures on fake sysfs trees', () => {
  it('a 6.1-like tree lacks general_profit, ksm_zero_pages, smart_scan and the advisor, each with a reason', () => {
    const old = Object.fromEntries(
      Object.entries(MODERN_TREE).filter(([name]) => !/^(general_profit|ksm_zero_pages|smart_scan|advisor_.*|pages_skipped)$/.test(name)),
    );
    const fake = useFakeSysfs(old);
    cleanup = fake.cleanup;
    const features = kernelFeatures();
    expect(features.ksm.available).toBe(true);
    for (const [key, file] of SYSFS_FEATURES.slice(1)) {
      expect(features[key], file).toEqual({ available: false, probed: true, source: join(fake.root, file), reason: expect.stringContaining(`${join(fake.root, file)} is missing`) });
    }
    expect(features.generalProfit.reason).toMatch(/estimated/);
  });

  it('a missing KSM folder means no KSM', () => {
    const fake = useFakeSysfs({});
    cleanup = fake.cleanup;
    process.env.KSM_SYSFS_ROOT = join(fake.root, 'absent');
    expect(kernelFeatures().ksm).toMatchObject({ available: false, reason: expect.stringMatching(/CONFIG_KSM/) });
  });
});
