// One reading of everything the exporter and the dashboard show, taken once per
// scrape or page refresh: ksmd's counters and CPU time, and KSM per process and cgroup.
import { basename } from 'node:path';
import type { CgroupIdentity } from '../process/cgroups.js';
import type { FairShare } from '../process/fair-share.js';
import { systemKsmStats, type SystemKsmStats } from '../kernel/system-stats.js';
import { processKsmStats } from '../process/process-stats.js';
import { ksmProcesses, type OptInMethod, type ProcessKsmRow } from '../process/top.js';
import { ksmdCpuSeconds } from './ksmd-cpu.js';

/** Where the per-process figures come from beyond /proc; replaced in tests. */
export interface SnapshotSources {
  fairShareSaved(pids: number[]): FairShare;
  identifyCgroup(path: string): CgroupIdentity;
}

/** One process that merges or opted in. */
export interface ProcessEntry {
  pid: number;
  /** The program's name: the first word of its command line, without the folder. */
  command: string;
  cgroup: CgroupIdentity;
  mergingBytes: number;
  /** undefined where the kernel does not say (before 6.4), or before the fair-share API answers. */
  profitBytes: number | undefined;
  zeroPageBytes: number | undefined;
  rmapItems: number | undefined;
  fairShareSavedBytes: number | undefined;
  methods: OptInMethod[];
}

/** One cgroup's processes summed. */
export interface CgroupEntry {
  cgroup: CgroupIdentity;
  processes: number;
  mergingBytes: number;
  profitBytes: number | undefined;
  zeroPageBytes: number | undefined;
  rmapItems: number | undefined;
  fairShareSavedBytes: number | undefined;
  /** How many of its processes opted in each way. */
  methods: Partial<Record<OptInMethod, number>>;
}

export interface FleetSnapshot {
  /** When it was taken, ms since the epoch. */
  time: number;
  system: SystemKsmStats;
  ksmdCpuSeconds: number | undefined;
  /** Every process that merges or opted in, most merged first. */
  processes: ProcessEntry[];
  cgroups: CgroupEntry[];
  /** Processes looked at, and those whose KSM files this user may not read. */
  scanned: number;
  unreadable: number;
  fairShare: { available: true; totalSavedBytes: number } | { available: false; reason: string };
  /** Seconds spent reading it. */
  durationSeconds: number;
}

/** Reads the whole state. Processes that exit meanwhile are left out. */
export function takeSnapshot(sources: SnapshotSources): FleetSnapshot {
  const start = process.hrtime.bigint();
  const system = systemKsmStats();
  const cpu = ksmdCpuSeconds();
  const list = ksmProcesses();
  const identities = new Map<string, CgroupIdentity>();
  const identify = (path: string): CgroupIdentity => {
    let identity = identities.get(path);
    if (!identity) identities.set(path, (identity = sources.identifyCgroup(path)));
    return identity;
  };
  const fairShare = sources.fairShareSaved(list.processes.map((row) => row.pid));
  const processes = list.processes.map((row) => processEntry(row, identify(row.cgroup), fairShare));
  const durationSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  return {
    time: Date.now(),
    system,
    ksmdCpuSeconds: cpu,
    processes,
    cgroups: sumByCgroup(processes),
    scanned: list.scanned,
    unreadable: list.unreadable.count,
    fairShare: fairShare.available ? { available: true, totalSavedBytes: fairShare.totalSavedBytes } : { available: false, reason: fairShare.reason },
    durationSeconds,
  };
}

function processEntry(row: ProcessKsmRow, cgroup: CgroupIdentity, fairShare: FairShare): ProcessEntry {
  // ksmProcesses() keeps what `ksm top` shows; the exporter adds ksm_stat's other counts.
  let rmapItems: number | undefined;
  let zeroPageBytes: number | undefined;
  try {
    const stats = processKsmStats(row.pid, { coverage: false });
    if (stats.supported) ({ rmapItems, zeroBytes: zeroPageBytes } = stats);
  } catch {
    // Exited since the listing: its last figures stand.
  }
  return {
    pid: row.pid,
    command: programName(row.command),
    cgroup,
    mergingBytes: row.mergingBytes,
    profitBytes: row.profitBytes,
    zeroPageBytes,
    rmapItems,
    fairShareSavedBytes: fairShare.available ? (fairShare.savedBytes.get(row.pid) ?? 0) : undefined,
    methods: row.methods,
  };
}

function programName(command: string): string {
  if (command.startsWith('[')) return command.slice(1, -1);
  return basename(command.split(' ')[0] ?? command).slice(0, 64);
}

function addOptional(sum: number | undefined, value: number | undefined): number | undefined {
  return value === undefined ? sum : (sum ?? 0) + value;
}

function sumByCgroup(processes: readonly ProcessEntry[]): CgroupEntry[] {
  const groups = new Map<string, CgroupEntry>();
  for (const entry of processes) {
    let group = groups.get(entry.cgroup.path);
    if (!group) {
      group = { cgroup: entry.cgroup, processes: 0, mergingBytes: 0, profitBytes: undefined, zeroPageBytes: undefined, rmapItems: undefined, fairShareSavedBytes: undefined, methods: {} };
      groups.set(entry.cgroup.path, group);
    }
    group.processes++;
    group.mergingBytes += entry.mergingBytes;
    group.profitBytes = addOptional(group.profitBytes, entry.profitBytes);
    group.zeroPageBytes = addOptional(group.zeroPageBytes, entry.zeroPageBytes);
    group.rmapItems = addOptional(group.rmapItems, entry.rmapItems);
    group.fairShareSavedBytes = addOptional(group.fairShareSavedBytes, entry.fairShareSavedBytes);
    for (const method of entry.methods) group.methods[method] = (group.methods[method] ?? 0) + 1;
  }
  return [...groups.values()].sort((a, b) => b.mergingBytes - a.mergingBytes || a.cgroup.path.localeCompare(b.cgroup.path));
}
