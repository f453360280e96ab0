import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NativeAddon } from '../../lib/core/addon.js';
import { KsmError } from '../../lib/core/errors.js';
import { prctlSwitchedOffForTests, readMemoryMerge, writeMemoryMerge } from '../../lib/kernel/prctl.js';

/** An addon whose prctl answers as a given kernel would. */
function kernelAnswering(answer: number | KsmError): NativeAddon {
  const prctl = () => {
    if (answer instanceof KsmError) throw answer;
    return answer;
  };
  return { getMemoryMerge: prctl, setMemoryMerge: prctl } as unknown as NativeAddon;
}

describe('prctl answers', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('reads the flag', () => {
    expect(readMemoryMerge(kernelAnswering(1))).toEqual({ merging: true });
    expect(readMemoryMerge(kernelAnswering(0))).toEqual({ merging: false });
    expect(writeMemoryMerge(kernelAnswering(0), true)).toBeUndefined();
  });

  it('turns EINVAL (a kernel before 6.4) into a reason that names the way out', () => {
    const oldKernel = kernelAnswering(KsmError.fromErrno('prctl(PR_GET_MEMORY_MERGE)', 22, 'Invalid argument'));
    expect(readMemoryMerge(oldKernel).reason).toMatch(/needs Linux 6.4 or later .*use markProcessMergeable\(\)/);
    expect(writeMemoryMerge(oldKernel, true)).toMatch(/refuses prctl\(PR_SET_MEMORY_MERGE\) with EINVAL/);
  });

  it('rethrows any other failure', () => {
    const denied = kernelAnswering(KsmError.fromErrno('prctl(PR_SET_MEMORY_MERGE)', 1, 'Operation not permitted'));
    expect(() => writeMemoryMerge(denied, true)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => readMemoryMerge(denied)).toThrow(KsmError);
  });

  it('KSM_PRELOAD_TEST_NO_PRCTL=1 refuses without asking the kernel', () => {
    vi.stubEnv('KSM_PRELOAD_TEST_NO_PRCTL', '1');
    const untouchable = {} as NativeAddon;
    expect(prctlSwitchedOffForTests()).toMatch(/KSM_PRELOAD_TEST_NO_PRCTL=1/);
    expect(readMemoryMerge(untouchable).reason).toMatch(/KSM_PRELOAD_TEST_NO_PRCTL=1/);
    expect(writeMemoryMerge(untouchable, true)).toMatch(/KSM_PRELOAD_TEST_NO_PRCTL=1/);
  });
});
