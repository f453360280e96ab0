import { accessSync, constants, readFileSync } from 'node:fs';
import { KsmError } from '../core/errors.js';
import { type CgroupIdentity, identifyCgroup } from './cgroups.js';
import { fairShareSaved } from './fair-share.js';
import { processKsmStats } from './process-stats.js';
import { allUserPids } from './select.js';

/**
 * How a process opted in: `prctl` (ksm_merge_any), `madvise` (mergeable memory
 * without the process-wide flag), `preload` (its environment preloads
 * libksm_preload.so). `unknown`: it merges, but this kernel (before 6.14) does not say how.
 */
export type OptInMethod = 'prctl' | 'madvise' | 'preload' | 'unknown';

/** One process that KSM knows about. */
export interface ProcessKsmRow {
  pid: number;
  /** The command line (or [comm] when it has none). */
  command: string;
  /** The cgroup it belongs to, as /proc/PID/cgroup names it. */
  cgroup: string;
  mergingPages: number;
  mergingBytes: number;
  /** ksm_process_profit (6.4+), signed: the kernel's figure, which credits every mapping of a shared page a whole page. */
  profitBytes: number | undefined;
  /** Fair-share saving: (k−1)/k of a page per mapping of a page shared k times (see fairShareSaved); undefined without root. */
  savedBytes: number | undefined;
  methods: OptInMethod[];
}

/** One cgroup (a container, a systemd service): its processes summed, and what it is. */
export interface CgroupKsmRow extends Omit<CgroupIdentity, 'path'> {
  cgroup: string;
  processes: number;
  mergingBytes: number;
  /** Sum of the profits the kernel reports; undefined when no process has one. Overstates: see savedBytes. */
  profitBytes: number | undefined;
  /** Sum of the processes' fair-share savings: summed over cgroups, what the host saves. Undefined without root. */
  savedBytes: number | undefined;
}

/** What ksmProcesses() saw. */
export interface KsmProcessList {
  /** Processes that merge or opted in, most merged memory first. */
  processes: ProcessKsmRow[];
  /** Processes looked at (kernel threads and this process excluded). */
  scanned: number;
  /** Processes whose KSM files this user may not read: counted, never silently dropped. */
  unreadable: { count: number; pids: number[]; reason: string | undefined };
  /** Whether the rows carry fair-share savedBytes, and why not. */
  fairShare: { available: true } | { available: false; reason: string };
}

/**
 * Lists every process that has merged pages or opted in to KSM, with how it opted
 * in and its cgroup. Processes that exit during the scan are left out; processes
 * whose files are unreadable are counted in `unreadable`.
 */
export function ksmProcesses(pids: readonly number[] = allUserPids()): KsmProcessList {
  const processes: ProcessKsmRow[] = [];
  const unreadable: KsmProcessList['unreadable'] = { count: 0, pids: [], reason: undefined };
  let scanned = 0;
  for (const pid of pids) {
    let row: ProcessKsmRow | 'unreadable' | undefined;
    try {
      row = processRow(pid);
    } catch (error) {
      if (error instanceof KsmError && error.code === 'ESRCH') continue;
      throw error;
    }
    scanned++;
    if (row === 'unreadable') {
      unreadable.count++;
      unreadable.pids.push(pid);
      unreadable.reason = "/proc/PID/ksm_merging_pages and ksm_stat are readable only by the process's owner and root";
    } else if (row !== undefined) {
      processes.push(row);
    }
  }
  processes.sort((a, b) => b.mergingBytes - a.mergingBytes || a.pid - b.pid);
  const share = fairShareSaved(processes.map((row) => row.pid));
  // A process that exited between the two scans is credited nothing.
  if (share.available) for (const row of processes) row.savedBytes = share.savedBytes.get(row.pid) ?? 0;
  return { processes, scanned, unreadable, fairShare: share.available ? { available: true } : { available: false, reason: share.reason } };
}

function processRow(pid: number): ProcessKsmRow | 'unreadable' | undefined {
  let stats = processKsmStats(pid, { coverage: false });
  if (!stats.supported) throw new KsmError('ksmProcesses', 'ENOTSUP', stats.reason);
  if (stats.mergingPages === undefined && !readable(pid, 'ksm_merging_pages')) return 'unreadable';
  const preloaded = preloadsLibrary(pid);
  // Where ksm_stat has no ksm_merge_any line (before 6.14), smaps tells prctl from
  // madvise; read only for processes KSM has seen, as smaps is the costly file.
  if (stats.mergeAny === undefined && (preloaded || (stats.rmapItems ?? 0) > 0 || (stats.mergingPages ?? 0) > 0)) {
    const withSmaps = processKsmStats(pid);
    if (withSmaps.supported) stats = withSmaps;
  }
  const methods: OptInMethod[] = [];
  if (preloaded) methods.push('preload');
  if (stats.mergeAny) methods.push('prctl');
  else if (stats.mergeable || (stats.coverage?.mergeableAnonBytes ?? 0) > 0) methods.push('madvise');
  const mergingPages = stats.mergingPages ?? 0;
  if (methods.length === 0 && mergingPages > 0) methods.push('unknown');
  if (methods.length === 0) return undefined;
  return {
    pid,
    command: commandOf(pid),
    cgroup: cgroupOf(pid),
    mergingPages,
    mergingBytes: stats.mergingBytes ?? 0,
    profitBytes: stats.profitBytes,
    savedBytes: undefined,
    methods,
  };
}

/**
 * Sums the processes per cgroup and names each (container, pod, systemd unit: see
 * identifyCgroup), most saved first (most merged where savings are unavailable).
 * `options.root` is where the container engines' metadata is looked up.
 */
export function groupByCgroup(processes: readonly ProcessKsmRow[], options?: { root?: string }): CgroupKsmRow[] {
  const groups = new Map<string, CgroupKsmRow>();
  for (const row of processes) {
    let group = groups.get(row.cgroup);
    if (group === undefined) {
      const { path, ...identity } = identifyCgroup(row.cgroup, options);
      group = { cgroup: path, ...identity, processes: 0, mergingBytes: 0, profitBytes: undefined, savedBytes: undefined };
      groups.set(row.cgroup, group);
    }
    group.processes++;
    group.mergingBytes += row.mergingBytes;
    if (row.profitBytes !== undefined) group.profitBytes = (group.profitBytes ?? 0) + row.profitBytes;
    if (row.savedBytes !== undefined) group.savedBytes = (group.savedBytes ?? 0) + row.savedBytes;
  }
  const rank = (group: CgroupKsmRow): number => group.savedBytes ?? group.mergingBytes;
  return [...groups.values()].sort((a, b) => rank(b) - rank(a) || b.mergingBytes - a.mergingBytes || a.cgroup.localeCompare(b.cgroup));
}

function readProc(pid: number, name: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${name}`, 'latin1');
  } catch {
    return undefined;
  }
}

/** False only when the file exists but this user may not read it. */
function readable(pid: number, name: string): boolean {
  try {
    accessSync(`/proc/${pid}/${name}`, constants.R_OK);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'EACCES';
  }
}

/** LD_PRELOAD as the process was started with it (/proc/PID/environ) names our library. */
function preloadsLibrary(pid: number): boolean {
  const preload = readProc(pid, 'environ')
    ?.split('\0')
    .find((entry) => entry.startsWith('LD_PRELOAD='));
  return preload !== undefined && /(^|[\s:=/])libksm_preload\.so/.test(preload);
}

function commandOf(pid: number): string {
  const cmdline = readProc(pid, 'cmdline')?.replace(/\0+$/, '').replaceAll('\0', ' ');
  return cmdline || `[${readProc(pid, 'comm')?.trim() ?? '?'}]`;
}

/**
 * The cgroup v2 path when the process sits below the root there; otherwise (hybrid
 * hosts, where containers live in the v1 hierarchies) the memory controller's path.
 */
export function cgroupOf(pid: number): string {
  const lines = (readProc(pid, 'cgroup') ?? '').split('\n');
  const pathOf = (test: (controllers: string, id: string) => boolean): string | undefined => {
    for (const line of lines) {
      const match = /^(\d+):([^:]*):(.*)$/.exec(line);
      if (match && test(match[2] ?? '', match[1] ?? '')) return match[3];
    }
    return undefined;
  };
  const unified = pathOf((controllers, id) => id === '0' && controllers === '');
  if (unified !== undefined && unified !== '/') return unified;
  return pathOf((controllers) => controllers.split(',').includes('memory')) ?? unified ?? '/';
}
