// The exporter's metrics: a prom-client Registry of its own (no process defaults)
// whose collect() callbacks read the snapshot taken for the scrape.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import { ksmSysfsRoot } from '../kernel/sysfs.js';
import type { SystemKsmStats } from '../kernel/system-stats.js';
import { findKsmdPid } from './ksmd-cpu.js';
import type { CgroupEntry, FleetSnapshot, ProcessEntry } from './snapshot.js';

/** `node`: node_exporter's names for the system counters; `ksm`: ksm_ only, to run beside node_exporter. */
export type MetricNames = 'node' | 'ksm';

export interface ExporterMetricsOptions {
  names: MetricNames;
  /** Processes exported, most merged first: bounds the series count. */
  top: number;
  /** The snapshot of the scrape in progress. */
  current(): FleetSnapshot;
}

/** One system metric read from /sys/kernel/mm/ksm, named as node_exporter's ksmd collector names it. */
interface SystemMetric {
  /** The name after the node_ksmd_ / ksm_ksmd_ prefix. */
  name: string;
  file: string;
  type: 'gauge' | 'counter';
  help: string;
  value(stats: SystemKsmStats): number | undefined;
}

const knob = (name: string) => (stats: SystemKsmStats) => {
  const value = stats.knobs[name as keyof SystemKsmStats['knobs']];
  return value === undefined ? undefined : Number(value);
};
const counter = (name: keyof SystemKsmStats['counters']) => (stats: SystemKsmStats) => stats.counters[name];

/** node_exporter's ksmd collector: the same names, types and values. */
const NODE_EXPORTER_METRICS: SystemMetric[] = [
  { name: 'full_scans_total', file: 'full_scans', type: 'counter', help: 'Full scans ksmd has completed (full_scans).', value: counter('full_scans') },
  { name: 'merge_across_nodes', file: 'merge_across_nodes', type: 'gauge', help: 'Whether pages of different NUMA nodes merge (merge_across_nodes).', value: knob('merge_across_nodes') },
  { name: 'pages_shared', file: 'pages_shared', type: 'gauge', help: 'KSM pages in use (pages_shared).', value: counter('pages_shared') },
  { name: 'pages_sharing', file: 'pages_sharing', type: 'gauge', help: 'Mappings that share a KSM page: pages saved (pages_sharing).', value: counter('pages_sharing') },
  { name: 'pages_to_scan', file: 'pages_to_scan', type: 'gauge', help: 'Pages ksmd scans per wake-up (pages_to_scan).', value: knob('pages_to_scan') },
  { name: 'pages_unshared', file: 'pages_unshared', type: 'gauge', help: 'Pages scanned that have no twin yet (pages_unshared).', value: counter('pages_unshared') },
  { name: 'pages_volatile', file: 'pages_volatile', type: 'gauge', help: 'Pages changing too fast to merge (pages_volatile).', value: counter('pages_volatile') },
  { name: 'run', file: 'run', type: 'gauge', help: 'ksmd state: 0 stopped, 1 running, 2 stopped and unmerged (run).', value: knob('run') },
  {
    name: 'sleep_seconds',
    file: 'sleep_millisecs',
    type: 'gauge',
    help: 'Pause between ksmd wake-ups, in seconds (sleep_millisecs).',
    value: (stats) => (stats.knobs.sleep_millisecs === undefined ? undefined : Number(stats.knobs.sleep_millisecs) / 1000),
  },
  { name: 'general_profit_bytes', file: 'general_profit', type: 'gauge', help: "Bytes saved minus KSM's bookkeeping, signed (general_profit).", value: counter('general_profit') },
];

/** Counters node_exporter does not export: always under ksm_ names. */
const EXTRA_SYSTEM_METRICS: SystemMetric[] = [
  { name: 'pages_scanned_total', file: 'pages_scanned', type: 'counter', help: 'Pages ksmd has scanned (pages_scanned).', value: counter('pages_scanned') },
  { name: 'pages_skipped', file: 'pages_skipped', type: 'gauge', help: 'Pages smart scan skipped (pages_skipped).', value: counter('pages_skipped') },
  { name: 'zero_pages', file: 'ksm_zero_pages', type: 'gauge', help: "Pages merged with the kernel's zero page (ksm_zero_pages).", value: counter('ksm_zero_pages') },
  { name: 'stable_node_chains', file: 'stable_node_chains', type: 'gauge', help: 'KSM pages that reached max_page_sharing (stable_node_chains).', value: counter('stable_node_chains') },
  { name: 'advisor_scan_time', file: 'advisor_mode', type: 'gauge', help: "1 when the kernel's scan-time advisor tunes pages_to_scan (advisor_mode).", value: (stats) => (stats.knobs.advisor_mode === undefined ? undefined : Number(stats.knobs.advisor_mode === 'scan-time')) },
];

const PROCESS_LABELS = ['pid', 'command', 'cgroup', 'opt_in'] as const;
const CGROUP_LABELS = ['cgroup', 'name', 'engine', 'container', 'pod'] as const;

/** Builds the registry. System metrics whose file this kernel lacks are left out rather than exported as 0. */
export function createExporterMetrics(options: ExporterMetricsOptions): Registry {
  const registry = new Registry();
  const registers = [registry];
  const systemPrefix = options.names === 'node' ? 'node_ksmd_' : 'ksm_ksmd_';
  const root = ksmSysfsRoot();
  const present = (metric: SystemMetric): boolean => existsSync(join(root, metric.file));

  const addSystem = (metric: SystemMetric, prefix: string): void => {
    const config = { name: prefix + metric.name, help: metric.help, registers };
    if (metric.type === 'counter') {
      new Counter({ ...config, collect() { resetTo(this, metric.value(options.current().system)); } });
    } else {
      new Gauge({ ...config, collect() { this.set(metric.value(options.current().system) ?? Number.NaN); } });
    }
  };
  for (const metric of NODE_EXPORTER_METRICS.filter(present)) addSystem(metric, systemPrefix);
  for (const metric of EXTRA_SYSTEM_METRICS.filter(present)) addSystem(metric, 'ksm_ksmd_');

  // Without ksmd in sight (no KSM, or a container without the host's PID namespace) there is no series.
  if (findKsmdPid() !== undefined) {
    new Counter({
      name: 'ksm_ksmd_cpu_seconds_total',
      help: "CPU time ksmd has used since boot (utime + stime of its /proc stat).",
      registers,
      collect() { resetTo(this, options.current().ksmdCpuSeconds); },
    });
  }
  new Gauge({
    name: 'ksm_saved_bytes',
    help: 'Memory KSM saves right now: pages_sharing × page size.',
    registers,
    collect() { this.set(options.current().system.savedBytes ?? Number.NaN); },
  });
  new Gauge({
    name: 'ksm_exporter_scrape_duration_seconds',
    help: 'Time this scrape spent reading /sys and /proc.',
    registers,
    collect() { this.set(options.current().durationSeconds); },
  });
  new Gauge({
    name: 'ksm_processes_scanned',
    help: 'Processes the exporter looked at (kernel threads excluded).',
    registers,
    collect() { this.set(options.current().scanned); },
  });
  new Gauge({
    name: 'ksm_processes_unreadable',
    help: "Processes whose KSM files the exporter may not read (run it as root).",
    registers,
    collect() { this.set(options.current().unreadable); },
  });
  new Gauge({
    name: 'ksm_processes_using_ksm',
    help: 'Processes that merge or opted in; only the top ones get ksm_process_* series.',
    registers,
    collect() { this.set(options.current().processes.length); },
  });
  new Gauge({
    name: 'ksm_fair_share_available',
    help: '1 when fair-share savings are known; 0 when this kernel or user cannot attribute them.',
    registers,
    collect() { this.set(Number(options.current().fairShare.available)); },
  });
  new Gauge({
    name: 'ksm_fair_share_age_seconds',
    help: 'Age of the fair-share figures: they are computed in the background, not per scrape.',
    registers,
    collect() {
      const status = options.current().fairShare;
      this.set(status.available ? status.ageSeconds : Number.NaN);
    },
  });
  new Gauge({
    name: 'ksm_fair_share_duration_seconds',
    help: "Time the last fair-share computation took (a walk of the merging processes' page tables).",
    registers,
    collect() {
      const status = options.current().fairShare;
      this.set(status.available ? status.durationSeconds : Number.NaN);
    },
  });

  const processGauge = (name: string, help: string, value: (entry: ProcessEntry) => number | undefined): void => {
    new Gauge({
      name: `ksm_process_${name}`,
      help,
      labelNames: PROCESS_LABELS,
      registers,
      collect() {
        this.reset();
        for (const entry of options.current().processes.slice(0, options.top)) {
          const figure = value(entry);
          if (figure !== undefined) this.set(processLabels(entry), figure);
        }
      },
    });
  };
  processGauge('merging_bytes', 'Memory of the process merged by KSM (ksm_merging_pages × page size).', (entry) => entry.mergingBytes);
  processGauge('fair_share_saved_bytes', "The process's fair share of what KSM saves: each shared page's saving split among the processes that map it.", (entry) => entry.fairShareSavedBytes);
  processGauge('profit_bytes', "The kernel's profit for the process, signed (ksm_process_profit).", (entry) => entry.profitBytes);
  processGauge('zero_page_bytes', "Memory of the process merged with the kernel's zero page (ksm_zero_pages × page size).", (entry) => entry.zeroPageBytes);
  processGauge('rmap_items', 'Pages of the process KSM tracks, 64 bytes of kernel memory each (ksm_rmap_items).', (entry) => entry.rmapItems);

  const cgroupGauge = (name: string, help: string, value: (entry: CgroupEntry) => number | undefined): void => {
    new Gauge({
      name: `ksm_cgroup_${name}`,
      help,
      labelNames: CGROUP_LABELS,
      registers,
      collect() {
        this.reset();
        for (const entry of options.current().cgroups) {
          const figure = value(entry);
          if (figure !== undefined) this.set(cgroupLabels(entry), figure);
        }
      },
    });
  };
  cgroupGauge('merging_bytes', "Merged memory of the cgroup's processes.", (entry) => entry.mergingBytes);
  cgroupGauge('fair_share_saved_bytes', "The cgroup's fair share of what KSM saves.", (entry) => entry.fairShareSavedBytes);
  cgroupGauge('profit_bytes', "The kernel's profit summed over the cgroup's processes, signed.", (entry) => entry.profitBytes);
  cgroupGauge('zero_page_bytes', "The cgroup's memory merged with the kernel's zero page.", (entry) => entry.zeroPageBytes);
  cgroupGauge('rmap_items', "Pages of the cgroup's processes KSM tracks.", (entry) => entry.rmapItems);
  new Gauge({
    name: 'ksm_cgroup_processes',
    help: "The cgroup's processes that use KSM, by how they opted in (prctl, madvise, preload, unknown).",
    labelNames: [...CGROUP_LABELS, 'opt_in'],
    registers,
    collect() {
      this.reset();
      for (const entry of options.current().cgroups) {
        for (const [method, count] of Object.entries(entry.methods)) this.set({ ...cgroupLabels(entry), opt_in: method }, count);
      }
    },
  });
  return registry;
}

/** A counter read from the kernel: its value is the kernel's, not a sum of increments. */
function resetTo(metric: Counter, value: number | undefined): void {
  metric.reset();
  if (value !== undefined) metric.inc(value);
}

function processLabels(entry: ProcessEntry): Record<(typeof PROCESS_LABELS)[number], string> {
  return { pid: String(entry.pid), command: entry.command, cgroup: entry.cgroup.name, opt_in: entry.methods.join('+') };
}

function cgroupLabels(entry: CgroupEntry): Record<(typeof CGROUP_LABELS)[number], string> {
  const { path, name, engine = '', container = '', pod = '' } = entry.cgroup;
  return { cgroup: path, name, engine, container, pod };
}
