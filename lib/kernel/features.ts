// What the running kernel offers for KSM, found by probing files and calls, never by
// version number: distributions backport features into kernels with older numbers.
// The calls are made by `ksm-exec --probe-kernel` in a process of its own, once per
// process of ours; the files are looked at on every call (KSM_SYSFS_ROOT may change).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { ksmAddon } from '../core/capability.js';
import { launcher } from '../core/paths.js';
import { prctlSwitchedOffForTests, readMemoryMerge } from './prctl.js';
import { ksmSysfsRoot } from './sysfs.js';

/** One thing the kernel offers, or not. */
export interface KernelFeature {
  available: boolean;
  /** False when it could not be found out here; `available` is then false. */
  probed: boolean;
  /** What the answer comes from: the file looked at, or the call made. */
  source: string;
  /** Why not, or why unknown; absent when available. */
  reason?: string;
}

/** Everything kernelFeatures() looks at. */
export interface KernelFeatures {
  /** /sys/kernel/mm/ksm: the kernel was built with CONFIG_KSM. */
  ksm: KernelFeature;
  /** prctl(PR_SET_MEMORY_MERGE): the whole process at once. */
  prctl: KernelFeature;
  /** The prctl flag reaches a program the process execs (`ksm run`, systemd's MemoryKSM=). */
  execSurvival: KernelFeature;
  /** ioctl(PROCMAP_QUERY) on /proc/PID/maps: the preload library looks up one mapping instead of walking them all. */
  procmapQuery: KernelFeature;
  /** /proc/PID/ksm_merging_pages. */
  ksmMergingPages: KernelFeature;
  /** /proc/PID/ksm_stat, with the fields this kernel writes in it and those it lacks. */
  ksmStat: KernelFeature & { fields: string[]; missing: string[] };
  /** /sys/kernel/mm/ksm/general_profit (else profit is estimated from the other counters). */
  generalProfit: KernelFeature;
  /** /sys/kernel/mm/ksm/ksm_zero_pages: pages merged with the zero page are counted. */
  ksmZeroPages: KernelFeature;
  /** /sys/kernel/mm/ksm/smart_scan: ksmd skips pages that failed to merge before. */
  smartScan: KernelFeature;
  /** /sys/kernel/mm/ksm/advisor_mode: the kernel can pick pages_to_scan itself. */
  advisor: KernelFeature;
}

/** Every field a ksm_stat may carry. */
export const KSM_STAT_FIELDS = ['ksm_rmap_items', 'ksm_zero_pages', 'ksm_merging_pages', 'ksm_process_profit', 'ksm_merge_any', 'ksm_mergeable'] as const;

const PROBE_COMMAND = 'ksm-exec --probe-kernel';
const TEST_SWITCHES = ['KSM_PRELOAD_TEST_NO_PRCTL', 'KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', 'KSM_PRELOAD_TEST_NO_PROCMAP_QUERY'] as const;

/** What ksm-exec --probe-kernel printed: errno numbers (0: works) and the exec-survival word. */
interface ProbeAnswer {
  prctl: number;
  execSurvival: 'kept' | 'lost' | 'unknown' | 'none';
  procmapQuery: number;
}

type Probe = { answer: ProbeAnswer; reason?: undefined } | { answer?: undefined; reason: string };

const probes = new Map<string, Probe>();

/**
 * What this kernel offers for KSM. Never throws. The first call in a process starts
 * `ksm-exec --probe-kernel` (a few milliseconds); later calls reuse its answer. The
 * test switches KSM_PRELOAD_TEST_NO_PRCTL, KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC and
 * KSM_PRELOAD_TEST_NO_PROCMAP_QUERY play kernels without those features.
 *
 * @example
 * if (!kernelFeatures().execSurvival.available) console.log('use the preload library for exec');
 */
export function kernelFeatures(): KernelFeatures {
  const probe = cachedProbe();
  const prctl = prctlFeature(probe);
  return {
    ksm: ksmFeature(),
    prctl,
    execSurvival: execSurvivalFeature(probe, prctl),
    procmapQuery: procmapQueryFeature(probe),
    ksmMergingPages: procFeature('ksm_merging_pages'),
    ksmStat: ksmStatFeature(),
    generalProfit: sysfsFeature('general_profit', 'profit is estimated from the other counters'),
    ksmZeroPages: sysfsFeature('ksm_zero_pages', 'pages merged with the zero page (use_zero_pages) are not counted'),
    smartScan: sysfsFeature('smart_scan', 'ksmd rescans pages that failed to merge'),
    advisor: sysfsFeature('advisor_mode', 'pages_to_scan is set by hand (ksm tune) only'),
  };
}

/** Whether the kernel has KSM at all: the one feature that needs no probe process. */
export function ksmFeature(): KernelFeature {
  return sysfsFeature('run', 'the kernel was built without CONFIG_KSM (or /sys is not mounted)');
}

function cachedProbe(): Probe {
  const exec = launcher();
  const key = JSON.stringify([exec.path, ...TEST_SWITCHES.map((name) => process.env[name])]);
  let probe = probes.get(key);
  if (probe === undefined) {
    probe = exec.path === undefined ? { reason: `${PROBE_COMMAND} cannot run: ${exec.reason}` } : runProbe(exec.path);
    probes.set(key, probe);
  }
  return probe;
}

function runProbe(file: string): Probe {
  // The probe starts clean: a library preloaded here would load into it and act on its own.
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  const result = spawnSync(file, ['--probe-kernel'], { env, encoding: 'utf8', timeout: 10_000 });
  if (result.error) return { reason: `${PROBE_COMMAND} failed: ${result.error.message}` };
  const values = new Map(result.stdout.split('\n').map((line) => line.split(' ', 2) as [string, string]));
  const prctl = Number(values.get('prctl'));
  const execSurvival = values.get('exec-survival');
  const procmapQuery = Number(values.get('procmap-query'));
  if (result.status !== 0 || !Number.isInteger(prctl) || !Number.isInteger(procmapQuery) || !['kept', 'lost', 'unknown', 'none'].includes(execSurvival ?? '')) {
    return { reason: `${PROBE_COMMAND} answered ${JSON.stringify(result.stdout + result.stderr)} with exit ${result.status}` };
  }
  return { answer: { prctl, execSurvival: execSurvival as ProbeAnswer['execSurvival'], procmapQuery } };
}

function errnoName(errno: number): string {
  return Object.entries(constants.errno).find(([, value]) => value === errno)?.[0] ?? `errno ${errno}`;
}

function prctlFeature(probe: Probe): KernelFeature {
  const switchedOff = prctlSwitchedOffForTests();
  if (switchedOff) return { available: false, probed: true, source: 'KSM_PRELOAD_TEST_NO_PRCTL', reason: switchedOff };
  if (probe.answer) {
    const source = `${PROBE_COMMAND}: prctl(PR_SET_MEMORY_MERGE, 1)`;
    if (probe.answer.prctl === 0) return { available: true, probed: true, source };
    const name = errnoName(probe.answer.prctl);
    const why = name === 'EINVAL' ? 'the kernel has no such call (mainline added it in 6.4)' : 'the kernel refuses it here';
    return { available: false, probed: true, source, reason: `prctl(PR_SET_MEMORY_MERGE) fails with ${name}: ${why}; the preload library marks memory with madvise instead` };
  }
  // Without ksm-exec, the addon can still ask this process's flag, which only a kernel with the call knows.
  const load = ksmAddon();
  const source = 'prctl(PR_GET_MEMORY_MERGE) by the addon';
  if (!load.addon) return { available: false, probed: false, source, reason: `cannot probe: ${probe.reason}, and the addon is missing: ${load.reason}` };
  const answer = readMemoryMerge(load.addon);
  return answer.reason === undefined ? { available: true, probed: true, source } : { available: false, probed: true, source, reason: answer.reason };
}

function execSurvivalFeature(probe: Probe, prctl: KernelFeature): KernelFeature {
  const source = `${PROBE_COMMAND}: a child sets the flag, execs and reads it back`;
  if (!prctl.available) return { available: false, probed: prctl.probed, source, reason: `nothing to survive exec without prctl: ${prctl.reason}` };
  if (process.env.KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC === '1') {
    return { available: false, probed: true, source: 'KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', reason: 'KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC=1 plays a kernel that drops the flag at execve' };
  }
  switch (probe.answer?.execSurvival) {
    case 'kept':
      return { available: true, probed: true, source };
    case 'lost':
      return {
        available: false,
        probed: true,
        source,
        reason: 'this kernel accepts PR_SET_MEMORY_MERGE but drops it at execve (as 6.4-6.6 do): a program started by exec runs unmarked unless the preload library is loaded (`ksm run` does that here)',
      };
    default:
      return { available: false, probed: false, source, reason: `cannot tell: ${probe.reason ?? `${PROBE_COMMAND} could not start its child`}` };
  }
}

function procmapQueryFeature(probe: Probe): KernelFeature {
  if (process.env.KSM_PRELOAD_TEST_NO_PROCMAP_QUERY === '1') {
    return { available: false, probed: true, source: 'KSM_PRELOAD_TEST_NO_PROCMAP_QUERY', reason: 'KSM_PRELOAD_TEST_NO_PROCMAP_QUERY=1 plays a kernel without it' };
  }
  const source = `${PROBE_COMMAND}: ioctl(PROCMAP_QUERY) on /proc/self/maps`;
  if (!probe.answer) return { available: false, probed: false, source, reason: `cannot probe: ${probe.reason}` };
  if (probe.answer.procmapQuery === 0) return { available: true, probed: true, source };
  return {
    available: false,
    probed: true,
    source,
    reason: `the ioctl fails with ${errnoName(probe.answer.procmapQuery)}: the preload library finds new mappings by walking /proc/self/maps`,
  };
}

function sysfsFeature(name: string, without: string): KernelFeature {
  const source = join(ksmSysfsRoot(), name);
  return existsSync(source) ? { available: true, probed: true, source } : { available: false, probed: true, source, reason: `${source} is missing: ${without}` };
}

function procFeature(name: string): KernelFeature {
  const source = `/proc/self/${name}`;
  return existsSync(source) ? { available: true, probed: true, source } : { available: false, probed: true, source, reason: `${source} is missing` };
}

function ksmStatFeature(): KernelFeatures['ksmStat'] {
  const source = '/proc/self/ksm_stat';
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch {
    return { available: false, probed: true, source, reason: `${source} is missing: per-process profit and rmap items are unknown`, fields: [], missing: [...KSM_STAT_FIELDS] };
  }
  const fields = text.split('\n').flatMap((line) => /^(\w+)/.exec(line)?.[1] ?? []);
  return { available: true, probed: true, source, fields, missing: KSM_STAT_FIELDS.filter((field) => !fields.includes(field)) };
}
