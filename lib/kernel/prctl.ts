// prctl(PR_{GET,SET}_MEMORY_MERGE) with the answers an old kernel gives turned
// into reasons. KSM_PRELOAD_TEST_NO_PRCTL=1 plays such a kernel for tests; the
// preload library honours the same variable.
import { KsmError } from '../core/errors.js';
import type { NativeAddon } from '../core/addon.js';

const TEST_SWITCH_REASON = 'prctl(PR_SET_MEMORY_MERGE) is switched off by KSM_PRELOAD_TEST_NO_PRCTL=1';
const OLD_KERNEL_REASON =
  'the kernel refuses prctl(PR_SET_MEMORY_MERGE) with EINVAL: it needs Linux 6.4 or later built with CONFIG_KSM; ' +
  'use markProcessMergeable()/keepProcessMergeable() or the preload library instead';

/** Why prctl counts as refused in this test run, or undefined normally. */
export function prctlSwitchedOffForTests(): string | undefined {
  return process.env.KSM_PRELOAD_TEST_NO_PRCTL === '1' ? TEST_SWITCH_REASON : undefined;
}

/** Rethrows anything but the EINVAL of a kernel without PR_SET_MEMORY_MERGE. */
function refusalReason(error: unknown): string {
  if (error instanceof KsmError && error.code === 'EINVAL') return OLD_KERNEL_REASON;
  throw error;
}

/** Whether this process merges all its memory (1/0), or why the kernel cannot say. */
export function readMemoryMerge(addon: NativeAddon): { merging: boolean; reason?: undefined } | { merging?: undefined; reason: string } {
  const switchedOff = prctlSwitchedOffForTests();
  if (switchedOff) return { reason: switchedOff };
  try {
    return { merging: addon.getMemoryMerge() === 1 };
  } catch (error) {
    return { reason: refusalReason(error) };
  }
}

/** Sets PR_SET_MEMORY_MERGE; returns undefined, or why the kernel cannot. */
export function writeMemoryMerge(addon: NativeAddon, on: boolean): string | undefined {
  const switchedOff = prctlSwitchedOffForTests();
  if (switchedOff) return switchedOff;
  try {
    addon.setMemoryMerge(on);
    return undefined;
  } catch (error) {
    return refusalReason(error);
  }
}
