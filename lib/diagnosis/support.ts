// What works on this machine and why not: the answer behind `ksm doctor`.
import { join } from 'node:path';
import { ksmAddon } from '../core/capability.js';
import { kernelFeatures, type KernelFeatures } from '../kernel/features.js';
import { kernelRelease } from '../kernel/version.js';
import { launcher, preloadLibrary } from '../core/paths.js';
import { ksmSysfsRoot, readKsmKnob } from '../kernel/sysfs.js';


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
   * prctl(PR_SET_MEMORY_MERGE) works. `probed` is false when neither the launcher
   * nor the addon is there to ask the kernel.
   */
  prctl: { available: boolean; probed: boolean } & Check;
  /** The process-wide flag survives execve, as a probe child shows, so `ksm run --mode prctl` and MemoryKSM=yes reach the program. */
  execSurvival: { expected: boolean } & Check;
  /** What the kernel offers, each feature probed (kernelFeatures()). */
  features: KernelFeatures;
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
  const features = kernelFeatures();
  const ksm = ksmPresence(features);
  const prctl = prctlAvailability(features, ksm);
  const supported = ksm.present && addon.loaded;
  return {
    platform,
    kernel,
    supported,
    ...(supported ? {} : { reason: ksm.reason ?? addon.reason }),
    ksm,
    ksmd: ksmdState(ksm),
    prctl,
    execSurvival: execSurvival(features, prctl),
    features,
    addon,
    preloadLibrary: preloadLibrary(),
    launcher: launcher(),
  };
}

function ksmPresence(features: KernelFeatures): KsmSupport['ksm'] {
  if (process.platform !== 'linux') {
    return { present: false, reason: `KSM is a Linux kernel feature; this is ${process.platform}` };
  }
  if (!features.ksm.available) {
    return {
      present: false,
      reason: `${ksmSysfsRoot()} is missing: the kernel was built without CONFIG_KSM (or /sys is not mounted); use a kernel with CONFIG_KSM=y`,
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

function prctlAvailability(features: KernelFeatures, ksm: KsmSupport['ksm']): KsmSupport['prctl'] {
  if (!ksm.present) return { available: false, probed: false, reason: `no prctl(PR_SET_MEMORY_MERGE) without KSM: ${ksm.reason}` };
  const { available, probed, reason } = features.prctl;
  return available ? { available, probed } : { available, probed, reason: reason ?? 'prctl(PR_SET_MEMORY_MERGE) is refused' };
}

function execSurvival(features: KernelFeatures, prctl: KsmSupport['prctl']): KsmSupport['execSurvival'] {
  if (!prctl.available) return { expected: false, reason: `the flag cannot survive exec without prctl: ${prctl.reason}` };
  const { available, reason } = features.execSurvival;
  return available ? { expected: true } : { expected: false, reason: reason ?? 'the flag does not survive execve' };
}
