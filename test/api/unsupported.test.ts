// Without the native addon (as on macOS, Windows, or a failed build) every
// function answers "not supported" with a reason, or throws ENOTSUP when strict.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { allocMergeable, allocUnmergeable } from '../../lib/marking/alloc.js';
import { execInPlace } from '../../lib/marking/exec.js';
import { markMergeable, unmarkMergeable } from '../../lib/marking/mark.js';
import { resetNativeForTesting } from '../../lib/core/addon.js';
import {
  disableProcessMerging,
  enableProcessMerging,
  isProcessMerging,
  keepProcessMergeable,
  markProcessMergeable,
} from '../../lib/marking/process-merging.js';
import { processKsmStats } from '../../lib/process/process-stats.js';
import { launcher } from '../../lib/core/paths.js';
import { ksmSupport } from '../../lib/diagnosis/support.js';
import { setStrict } from '../../lib/core/capability.js';

const REASON = 'the addon is disabled by KSM_PRELOAD_NO_ADDON=1';
const notSupported = expect.objectContaining({ name: 'KsmError', code: 'ENOTSUP', message: expect.stringContaining(REASON) });

describe('without the native addon', () => {
  beforeEach(() => {
    vi.stubEnv('KSM_PRELOAD_NO_ADDON', '1');
    resetNativeForTesting();
  });
  afterEach(() => {
    setStrict(false);
    vi.unstubAllEnvs();
    resetNativeForTesting();
  });

  it('markMergeable and unmarkMergeable advise nothing and say why', () => {
    const data = Buffer.alloc(1 << 20);
    expect(markMergeable(data)).toEqual({ supported: false, reason: REASON, advisedBytes: 0, advisedPages: 0 });
    expect(unmarkMergeable(data)).toEqual({ supported: false, reason: REASON, advisedBytes: 0, advisedPages: 0 });
    // Bad input is still bad input.
    expect(() => markMergeable('text' as never)).toThrow(TypeError);
  });

  it('allocMergeable returns an ordinary Buffer', () => {
    const buffer = allocMergeable(10, 'ab');
    expect(buffer).toEqual(Buffer.alloc(10, 'ab'));
  });

  it('allocUnmergeable refuses on Linux even when not strict: it cannot keep its promise', () => {
    expect(() => allocUnmergeable(32)).toThrow(notSupported);
  });

  it('process-level functions report the reason', () => {
    expect(enableProcessMerging()).toEqual({ supported: false, merging: false, reason: REASON });
    expect(disableProcessMerging()).toEqual({ supported: false, merging: false, reason: REASON });
    expect(isProcessMerging()).toBe(false);
    expect(markProcessMergeable()).toEqual({ supported: false, reason: REASON, mappings: 0, bytes: 0, failed: 0 });
    const keeper = keepProcessMergeable({ intervalMs: 10 });
    expect(keeper).toMatchObject({ supported: false, reason: REASON, passes: 0 });
    expect(() => keeper.stop()).not.toThrow();
  });

  it('execInPlace throws ENOTSUP', () => {
    expect(() => execInPlace('/bin/true', [])).toThrow(expect.objectContaining({ code: 'ENOTSUP', operation: 'execInPlace', syscall: undefined }));
  });

  it('statistics and ksmSupport still work: they need no addon', () => {
    expect(processKsmStats(process.pid, { coverage: false })).toMatchObject({ supported: true, pid: process.pid });
    const support = ksmSupport();
    expect(support).toMatchObject({ supported: false, reason: REASON, addon: { loaded: false, reason: REASON } });
    // ksm-exec still asks the kernel (it needs no addon); without it nothing can.
    expect(support.prctl.probed).toBe(launcher().path !== undefined);
  });

  it('every function throws ENOTSUP with { strict: true }', () => {
    const strict = { strict: true };
    const data = Buffer.alloc(1 << 20);
    for (const call of [
      () => markMergeable(data, strict),
      () => unmarkMergeable(data, strict),
      () => allocMergeable(10, 0, strict),
      () => allocUnmergeable(10, 0, strict),
      () => enableProcessMerging(strict),
      () => disableProcessMerging(strict),
      () => isProcessMerging(strict),
      () => markProcessMergeable(strict),
      () => keepProcessMergeable(strict),
    ]) {
      expect(call).toThrow(notSupported);
    }
  });

  it('setStrict(true) makes strict the default, and a call can still opt out', () => {
    setStrict(true);
    expect(() => markMergeable(Buffer.alloc(8192))).toThrow(notSupported);
    expect(() => allocMergeable(8)).toThrow(notSupported);
    expect(() => isProcessMerging()).toThrow(notSupported);
    expect(markMergeable(Buffer.alloc(8192), { strict: false }).supported).toBe(false);
  });
});

describe('on another platform (process.platform stubbed to darwin)', () => {
  const platform = Object.getOwnPropertyDescriptor(process, 'platform') as PropertyDescriptor;
  const DARWIN = 'KSM is a Linux kernel feature; this is darwin';
  beforeEach(() => {
    Object.defineProperty(process, 'platform', { value: 'darwin' });
    resetNativeForTesting();
  });
  afterEach(() => {
    Object.defineProperty(process, 'platform', platform);
    resetNativeForTesting();
  });

  it('reports the platform as the reason everywhere', () => {
    expect(markMergeable(Buffer.alloc(8192))).toMatchObject({ supported: false, reason: DARWIN });
    expect(processKsmStats()).toEqual({ supported: false, reason: DARWIN, pid: process.pid });
    expect(() => processKsmStats(process.pid, { strict: true })).toThrow(/ENOTSUP/);
    const support = ksmSupport();
    expect(support).toMatchObject({ platform: 'darwin', supported: false, ksm: { present: false, reason: DARWIN } });
    expect(support.preloadLibrary.reason).toMatch(/built for Linux only/);
  });

  it('allocUnmergeable returns an ordinary Buffer: without KSM nothing can merge it', () => {
    expect(allocUnmergeable(4, 9)).toEqual(Buffer.alloc(4, 9));
    expect(() => allocUnmergeable(4, 9, { strict: true })).toThrow(/ENOTSUP/);
  });
});
