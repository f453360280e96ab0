// One reading of everything the exporter and the dashboard show, taken once per
// scrape or page refresh: ksmd's counters and CPU time, and KSM per process and cgroup.
import { identifyCgroup, type CgroupIdentity } from '../process/cgroups.js';
import { systemKsmStats, type SystemKsmStats } from '../kernel/system-stats.js';
import type { OptInMethod } from '../process/top.js';
import type { FairShareCache } from './fair-share-cache.js';
import { ksmdCpuSeconds } from './ksmd-cpu.js';
import { scanKsmProcesses, type ScannedProcess } from './process-scan.js';

/** One process that merges or opted in. */
export interface ProcessEntry {
  pid: number;
  /** The program's name: the first word of its command line, without the folder. */
  command: string;
  cgroup: CgroupIdentity;
  mergingBytes: number;
  /** undefined where the kernel does not say (before 6.4). */
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
  /** Fair-share savings are computed in the background: their total, age and cost. */
  fairShare: ReturnType<FairShareCache['status']>;
  /** Seconds spent reading it. */
  durationSeconds: number;
}

/** Reads the whole state. Processes that exit meanwhile are left out. */
export function takeSnapshot(fairShare: FairShareCache): FleetSnapshot {
  const start = process.hrtime.bigint();
  const system = systemKsmStats();
  const cpu = ksmdCpuSeconds();
  const list = scanKsmProcesses();
  const identities = new Map<string, CgroupIdentity>();
  const identify = (path: string): CgroupIdentity => {
    let identity = identities.get(path);
    if (!identity) identities.set(path, (identity = identifyCgroup(path)));
    return identity;
  };
  const processes = list.processes.map((entry) => processEntry(entry, identify(entry.cgroup), fairShare.savedBytes(entry)));
  const durationSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  return {
    time: Date.now(),
    system,
    ksmdCpuSeconds: cpu,
    processes,
    cgroups: sumByCgroup(processes),
    scanned: list.scanned,
    unreadable: list.unreadable,
    fairShare: fairShare.status(),
    durationSeconds,
  };
}

function processEntry(scanned: ScannedProcess, cgroup: CgroupIdentity, fairShareSavedBytes: number | undefined): ProcessEntry {
  const { zeroPages: _, cgroup: __, ...figures } = scanned;
  return { ...figures, cgroup, fairShareSavedBytes };
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
