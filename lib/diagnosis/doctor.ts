import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { kernelRelease } from '../kernel/version.js';
import type { KernelFeatures } from '../kernel/features.js';
import { ksmSupport, type KsmSupport } from './support.js';
import { ksmSysfsRoot } from '../kernel/sysfs.js';
import type { SystemKsmStats } from '../kernel/system-stats.js';
import { ksmProcesses } from '../process/top.js';

/** Something that keeps memory from merging, with what to do about it. */
export interface MergeWarning {
  code: 'no-ksm' | 'ksmd-stopped' | 'no-opt-in' | 'thp-always';
  message: string;
  fix: string;
}

const THP_FILE = '/sys/kernel/mm/transparent_hugepage/enabled';

/** The transparent huge page mode (`always`, `madvise`, `never`), or undefined without THP. */
export function transparentHugePageMode(): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync(THP_FILE, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Why memory may not be merging right now: no KSM, ksmd stopped, no process opted
 * in, or transparent huge pages set to `always`. Scans /proc for opted-in processes.
 */
export function mergeWarnings(stats: SystemKsmStats): MergeWarning[] {
  if (!stats.available) {
    return [{ code: 'no-ksm', message: `this kernel has no KSM (${stats.root} is missing)`, fix: 'use a kernel built with CONFIG_KSM=y' }];
  }
  const warnings: MergeWarning[] = [];
  if (!stats.running) {
    warnings.push({ code: 'ksmd-stopped', message: `ksmd is not running (run=${stats.knobs.run ?? '?'}): nothing merges`, fix: enableFix('sudo ksm enable') });
  }
  const { processes, unreadable } = ksmProcesses();
  if (processes.length === 0) {
    const hidden = unreadable.count > 0 ? ` (${unreadable.count} processes were unreadable to this user; run as root to see them)` : '';
    warnings.push({
      code: 'no-opt-in',
      message: `no process has opted in to KSM${hidden}`,
      fix: 'start programs with `ksm run -- CMD`, or LD_PRELOAD=$(ksm where) CMD, or MemoryKSM=yes (see `ksm snippet`)',
    });
  }
  if (transparentHugePageMode() === 'always') {
    warnings.push({
      code: 'thp-always',
      message: 'transparent huge pages are set to always: KSM must split huge pages before it can merge them, so less merges and ksmd works harder',
      fix: `echo madvise | sudo tee ${THP_FILE}`,
    });
  }
  return warnings;
}

/** One line of `ksm doctor`. */
export interface DoctorCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  /** What to do, for warn and fail. */
  fix?: string;
  /** The `kernel features` check only: every feature probed, with where the answer came from. */
  features?: KernelFeatures;
}

/** Every check of `ksm doctor`, in the order a newcomer would fix them. Never throws. */
export function doctorChecks(): DoctorCheck[] {
  const support = ksmSupport();
  const checks: DoctorCheck[] = [kernelConfigCheck(support)];
  if (!support.ksm.present) return checks;
  checks.push(
    support.ksmd.running
      ? { name: 'ksmd', status: 'ok', detail: 'ksmd is running' }
      : { name: 'ksmd', status: 'warn', detail: support.ksmd.reason ?? 'ksmd is stopped', fix: enableFix('sudo ksm enable (add --persist to keep it on after reboot)') },
    containerCheck(),
    writableCheck(),
    thpCheck(),
    support.prctl.available
      ? { name: 'prctl', status: 'ok', detail: `prctl(PR_SET_MEMORY_MERGE) works (${support.features.prctl.source})` }
      : { name: 'prctl', status: 'warn', detail: support.prctl.reason ?? 'unavailable', fix: 'the preload library marks memory with madvise instead: ksm run --mode madvise' },
    support.execSurvival.expected
      ? { name: 'exec survival', status: 'ok', detail: 'the merge flag survives execve here (a probe child kept it), so `ksm run` and MemoryKSM=yes reach the program' }
      : {
          name: 'exec survival',
          status: 'warn',
          detail: support.execSurvival.reason ?? 'not expected',
          fix: '`ksm run` loads the preload library here by itself; for services use the LD_PRELOAD form of `ksm snippet`, not MemoryKSM=yes',
        },
    featuresCheck(support.features),
    support.addon.loaded
      ? { name: 'addon', status: 'ok', detail: 'the native addon loads' }
      : { name: 'addon', status: 'fail', detail: support.addon.reason ?? 'not loaded', fix: 'npm rebuild ksm-preload (needs a C++ compiler and python3)' },
    libraryCheck(support),
    support.launcher.path
      ? { name: 'launcher', status: 'ok', detail: `ksm-exec is built: ${support.launcher.path}` }
      : { name: 'launcher', status: 'fail', detail: support.launcher.reason ?? 'not built', fix: 'npm rebuild ksm-preload' },
  );
  return checks;
}

/** The files and calls of the kernel that the tools adapt to; what is missing is worked around, so never a warning. */
const LISTED_FEATURES: Array<[keyof KernelFeatures, string]> = [
  ['procmapQuery', 'PROCMAP_QUERY'],
  ['ksmMergingPages', 'ksm_merging_pages'],
  ['ksmStat', 'ksm_stat'],
  ['generalProfit', 'general_profit'],
  ['ksmZeroPages', 'ksm_zero_pages'],
  ['smartScan', 'smart_scan'],
  ['advisor', 'advisor'],
];

function featuresCheck(features: KernelFeatures): DoctorCheck {
  const listed = LISTED_FEATURES.map(([key, label]) => {
    const feature = features[key];
    const answer = feature.available ? 'yes' : feature.probed ? 'no' : 'unknown';
    const missingFields = key === 'ksmStat' && features.ksmStat.available && features.ksmStat.missing.length > 0 ? ` (without ${features.ksmStat.missing.join(', ')})` : '';
    return `${label} ${answer}${missingFields}`;
  });
  return { name: 'kernel features', status: 'ok', detail: listed.join(', '), features };
}

function kernelConfigCheck(support: KsmSupport): DoctorCheck {
  if (!support.ksm.present) return { name: 'CONFIG_KSM', status: 'fail', detail: support.ksm.reason ?? 'no KSM', fix: 'boot a kernel built with CONFIG_KSM=y' };
  const config = kernelConfig();
  if (config === undefined) return { name: 'CONFIG_KSM', status: 'ok', detail: `${ksmSysfsRoot()} exists (no readable kernel config to confirm)` };
  const line = /^CONFIG_KSM=(\w+)$/m.exec(config.text)?.[1];
  return line === 'y'
    ? { name: 'CONFIG_KSM', status: 'ok', detail: `CONFIG_KSM=y in ${config.file}, ${ksmSysfsRoot()} exists` }
    : { name: 'CONFIG_KSM', status: 'warn', detail: `${ksmSysfsRoot()} exists but ${config.file} does not say CONFIG_KSM=y (it may describe another kernel)` };
}

/** /boot/config-RELEASE, else /proc/config.gz, when readable. */
function kernelConfig(): { file: string; text: string } | undefined {
  const boot = `/boot/config-${kernelRelease()}`;
  try {
    return { file: boot, text: readFileSync(boot, 'utf8') };
  } catch {
    try {
      return { file: '/proc/config.gz', text: gunzipSync(readFileSync('/proc/config.gz')).toString('utf8') };
    } catch {
      return undefined;
    }
  }
}

/** ksmd is the host's: inside a container, starting it is the host's job. */
function enableFix(command: string): string {
  return containerRuntime() === undefined ? command : `on the host: ${command}; nothing inside a container can start ksmd`;
}

/** Signs of a container: its runtime's marker files, or a container cgroup for pid 1. */
export function containerRuntime(): string | undefined {
  if (existsSync('/.dockerenv')) return 'docker';
  if (existsSync('/run/.containerenv')) return 'podman';
  const init = readOptional('/proc/1/environ')?.split('\0').find((entry) => entry.startsWith('container='));
  if (init) return init.slice('container='.length);
  const cgroup = readOptional('/proc/1/cgroup') ?? '';
  return /\/(docker|kubepods|lxc|containerd|libpod)[/-]/.exec(cgroup)?.[1];
}

function containerCheck(): DoctorCheck {
  const runtime = containerRuntime();
  return runtime
    ? {
        name: 'container',
        status: 'warn',
        detail: `inside a container (${runtime}): ksmd and its knobs belong to the host, and /sys is usually read-only here`,
        fix: 'run `ksm enable`/`ksm tune` on the host; inside, start programs with `ksm run` or LD_PRELOAD',
      }
    : { name: 'container', status: 'ok', detail: 'not inside a container' };
}

function writableCheck(): DoctorCheck {
  const run = join(ksmSysfsRoot(), 'run');
  try {
    accessSync(run, constants.W_OK);
    return { name: 'sysfs writable', status: 'ok', detail: `${run} is writable: ksm enable/tune will work` };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'is on a read-only file system (a container?)' : 'needs root to write';
    return { name: 'sysfs writable', status: 'warn', detail: `${run} ${why}`, fix: code === 'EROFS' ? 'tune KSM on the host' : 'run ksm enable/tune with sudo' };
  }
}

function thpCheck(): DoctorCheck {
  const mode = transparentHugePageMode();
  if (mode !== 'always') return { name: 'THP', status: 'ok', detail: `transparent huge pages: ${mode ?? 'not available'}` };
  return { name: 'THP', status: 'warn', detail: 'transparent huge pages are always: KSM must split them before merging', fix: `echo madvise | sudo tee ${THP_FILE}` };
}

/** The C library a binary links against, from the names in it. */
function libcOf(file: string): 'glibc' | 'musl' | undefined {
  const bytes = readOptional(file, 'latin1') ?? '';
  if (bytes.includes('ld-musl') || bytes.includes('libc.musl')) return 'musl';
  if (bytes.includes('libc.so.6')) return 'glibc';
  if (bytes.includes('libc.so\0')) return 'musl';
  return undefined;
}

/** Built, and the loader accepts it: /bin/true runs with it preloaded (mode off) without a loader error. */
function libraryCheck(support: KsmSupport): DoctorCheck {
  const lib = support.preloadLibrary.path;
  if (!lib) return { name: 'preload library', status: 'fail', detail: support.preloadLibrary.reason ?? 'not built', fix: 'npm rebuild ksm-preload' };
  const libc = libcOf(lib);
  const hostLibc = libcOf('/bin/true');
  const probe = spawnSync('/bin/true', { env: { ...process.env, LD_PRELOAD: lib, KSM_PRELOAD_MODE: 'off' }, encoding: 'utf8' });
  const loaderError = probe.error?.message ?? (probe.stderr.includes('ld.so') || probe.status !== 0 ? probe.stderr.trim() || `exit ${probe.status}` : undefined);
  if (loaderError !== undefined) {
    return { name: 'preload library', status: 'fail', detail: `${lib} (${libc ?? 'unknown libc'}) does not load into /bin/true (${hostLibc ?? 'unknown libc'}): ${loaderError}`, fix: 'rebuild it for this system\'s C library: npm rebuild ksm-preload' };
  }
  return { name: 'preload library', status: 'ok', detail: `${lib} loads (${libc ?? 'unknown libc'})` };
}

function readOptional(file: string, encoding: BufferEncoding = 'utf8'): string | undefined {
  try {
    return readFileSync(file, encoding);
  } catch {
    return undefined;
  }
}
