// What works on this machine and why not: the answer behind `ksm doctor`.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ksmAddon } from '../core/capability.js';
import { kernelAtLeast, kernelRelease } from '../kernel/version.js';
import { launcher, preloadLibrary } from '../core/paths.js';
import { prctlSwitchedOffForTests, readMemoryMerge } from '../kernel/prctl.js';
import { ksmSysfsRoot, readKsmKnob } from '../kernel/sysfs.js';

export { setStrict, type StrictOption, type Unsupported } from '../core/capability.js';

/** One yes/no answer of ksmSupport(); `reason` accompanies every no. */
interface Check {
  /** Why not, in words a person can act on; absent when the answer is yes. */
  reason?: string;
}

/** What ksmSupport() found. */
export interface KsmSupport {
  /** process.platform */
  platform: NodeJS.Platform;
  /** The kernel release (uname -r), e.g. "6.18.4". */
  kernel: string;
  /** Whether this library can mark memory here: Linux, a kernel with KSM, and the addon. */
  supported: boolean;
  /** Why not, when `supported` is false. */
  reason?: string;
  /** The kernel has KSM (/sys/kernel/mm/ksm exists). */
  ksm: { present: boolean } & Check;
  /** ksmd scans (run = 1). Marking works without it, but nothing merges. */
  ksmd: { running: boolean } & Check;
  /**
   * prctl(PR_SET_MEMORY_MERGE) works (Linux 6.4+). `probed` says whether the
   * addon asked the kernel, or, without the addon, the kernel version decided.
   */
  prctl: { available: boolean; probed: boolean } & Check;
  /** The process-wide flag survives execve (Linux 6.7+), so `ksm run --mode prctl` reaches the program. */
  execSurvival: { expected: boolean } & Check;
  /** The native addon loaded. */
  addon: { loaded: boolean } & Check;
  /** libksm_preload.so, for LD_PRELOAD. */
  preloadLibrary: { path?: string } & Check;
  /** The ksm-exec launcher behind `ksm run`. */
  launcher: { path?: string } & Check;
}

/**
 * Reports what works here and, for everything that does not, why. Never throws.
 *
 * @example
 * const support = ksmSupport();
 * if (!support.supported) console.log(support.reason);
 */
export function ksmSupport(): KsmSupport {
  const platform = process.platform;
  const kernel = kernelRelease();
  const load = ksmAddon();
  const addon = load.addon ? { loaded: true } : { loaded: false, reason: load.reason };
  const ksm = ksmPresence();
  const prctl = prctlAvailability(load, ksm);
  const supported = ksm.present && addon.loaded;
  return {
    platform,
    kernel,
    supported,
    ...(supported ? {} : { reason: ksm.reason ?? addon.reason }),
    ksm,
    ksmd: ksmdState(ksm),
    prctl,
    execSurvival: execSurvival(prctl),
    addon,
    preloadLibrary: preloadLibrary(),
    launcher: launcher(),
  };
}

function ksmPresence(): KsmSupport['ksm'] {
  if (process.platform !== 'linux') {
    return { present: false, reason: `KSM is a Linux kernel feature; this is ${process.platform}` };
  }
  const root = ksmSysfsRoot();
  if (!existsSync(join(root, 'run'))) {
    return {
      present: false,
      reason: `${root} is missing: the kernel was built without CONFIG_KSM (or /sys is not mounted); use a kernel with CONFIG_KSM=y`,
    };
  }
  return { present: true };
}

function ksmdState(ksm: KsmSupport['ksm']): KsmSupport['ksmd'] {
  if (!ksm.present) return { running: false, reason: `no ksmd without KSM: ${ksm.reason}` };
  const file = join(ksmSysfsRoot(), 'run');
  const run = readKsmKnob('run');
  switch (run) {
    case '1':
      return { running: true };
    case '0':
      return { running: false, reason: `ksmd is stopped (${file} is 0): as root, \`echo 1 > ${file}\`; memory is marked but nothing merges until then` };
    case '2':
      return { running: false, reason: `ksmd is stopped and has unmerged everything (${file} is 2): as root, \`echo 1 > ${file}\`` };
    default:
      return { running: false, reason: run === undefined ? `cannot read ${file}` : `${file} holds an unexpected value ${JSON.stringify(run)}` };
  }
}

function prctlAvailability(load: ReturnType<typeof ksmAddon>, ksm: KsmSupport['ksm']): KsmSupport['prctl'] {
  if (!ksm.present) return { available: false, probed: false, reason: `no prctl(PR_SET_MEMORY_MERGE) without KSM: ${ksm.reason}` };
  if (load.addon) {
    const answer = readMemoryMerge(load.addon);
    return answer.reason === undefined ? { available: true, probed: true } : { available: false, probed: true, reason: answer.reason };
  }
  const switchedOff = prctlSwitchedOffForTests();
  if (switchedOff) return { available: false, probed: false, reason: switchedOff };
  return kernelAtLeast(6, 4)
    ? { available: true, probed: false }
    : { available: false, probed: false, reason: `prctl(PR_SET_MEMORY_MERGE) needs Linux 6.4 or later; this is ${kernelRelease()}` };
}

function execSurvival(prctl: KsmSupport['prctl']): KsmSupport['execSurvival'] {
  if (!prctl.available) return { expected: false, reason: `the flag cannot survive exec without prctl: ${prctl.reason}` };
  if (!kernelAtLeast(6, 7)) {
    return {
      expected: false,
      reason: `Linux ${kernelRelease()} drops the merge-any flag at execve (kept from 6.7 on): use the preload library (\`ksm run --mode madvise\`) for programs started by exec`,
    };
  }
  return { expected: true };
}
