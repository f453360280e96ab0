import { ksmFeature } from './features.js';
import { systemPageSize } from './page-size.js';
import { ksmSysfsRoot, readKsmKnob, readKsmNumber } from './sysfs.js';
import { KSM_KNOBS, type KnobSnapshot } from './tune.js';

/** Read-only counters of /sys/kernel/mm/ksm; which exist depends on the kernel version. */
export const KSM_COUNTERS = [
  'full_scans',
  'pages_scanned',
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'pages_skipped',
  'stable_node_chains',
  'stable_node_dups',
  'ksm_zero_pages',
  'general_profit',
] as const;

export type KsmCounter = (typeof KSM_COUNTERS)[number];

/** Counters that count pages, reported in bytes too. */
const PAGE_COUNTERS = ['pages_scanned', 'pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'pages_skipped', 'ksm_zero_pages'] as const;

/** What the kernel spends per page it tracks (struct ksm_rmap_item on 64-bit). */
const RMAP_ITEM_BYTES = 64;

/** KSM's state for the whole machine. A file the kernel lacks is simply absent here. */
export interface SystemKsmStats {
  /** False when there is no KSM folder at all (no CONFIG_KSM, or not Linux). */
  available: boolean;
  /** The folder read (KSM_SYSFS_ROOT for tests, else /sys/kernel/mm/ksm). */
  root: string;
  pageSize: number;
  /** ksmd is scanning (run = 1). */
  running: boolean;
  /** Every knob present, as the kernel prints it (advisor_mode without brackets). */
  knobs: KnobSnapshot;
  /** Every counter present, as read (pages, except full_scans, stable_node_* and general_profit in bytes). */
  counters: Partial<Record<KsmCounter, number>>;
  /** The page counters converted to bytes. */
  bytes: Partial<Record<(typeof PAGE_COUNTERS)[number], number>>;
  /** Memory saved right now: pages_sharing × page size. */
  savedBytes: number | undefined;
  /** pages_sharing ÷ pages_shared: how many mappings share each KSM page; undefined when nothing is shared. */
  sharingRatio: number | undefined;
  /** Bytes saved minus the kernel's bookkeeping; negative when KSM costs more than it saves. */
  profitBytes: number | undefined;
  /** `kernel` when general_profit exists (6.4+), else `estimate` from the other counters. */
  profitSource: 'kernel' | 'estimate' | undefined;
  /** Pages the kernel tracks for merging: shared + sharing + unshared + volatile. */
  trackedPages: number | undefined;
  /**
   * Seconds one full scan should take: the advisor's target under scan-time, else
   * tracked pages ÷ pages_to_scan × sleep_millisecs (ksmd's own CPU time not counted).
   */
  estimatedFullScanSeconds: number | undefined;
}

/** Reads every KSM knob and counter present, with the derived figures. Never throws. */
export function systemKsmStats(): SystemKsmStats {
  const pageSize = systemPageSize();
  const knobs: KnobSnapshot = {};
  for (const knob of KSM_KNOBS) {
    const value = readKsmKnob(knob);
    if (value !== undefined) knobs[knob] = value;
  }
  const counters: Partial<Record<KsmCounter, number>> = {};
  for (const counter of KSM_COUNTERS) {
    const value = readKsmNumber(counter);
    if (value !== undefined) counters[counter] = value;
  }
  const bytes: SystemKsmStats['bytes'] = {};
  for (const counter of PAGE_COUNTERS) {
    const pages = counters[counter];
    if (pages !== undefined) bytes[counter] = pages * pageSize;
  }
  const { pages_shared: shared, pages_sharing: sharing, pages_unshared: unshared, pages_volatile: volatile } = counters;
  const trackedPages =
    shared !== undefined && sharing !== undefined && unshared !== undefined && volatile !== undefined
      ? shared + sharing + unshared + volatile
      : undefined;
  const profit = profitOf(counters, trackedPages, pageSize);
  return {
    available: ksmFeature().available,
    root: ksmSysfsRoot(),
    pageSize,
    running: knobs.run === '1',
    knobs,
    counters,
    bytes,
    savedBytes: sharing === undefined ? undefined : sharing * pageSize,
    sharingRatio: sharing !== undefined && shared ? sharing / shared : undefined,
    profitBytes: profit?.bytes,
    profitSource: profit?.source,
    trackedPages,
    estimatedFullScanSeconds: fullScanSeconds(knobs, trackedPages),
  };
}

/** general_profit when the kernel has it, else the same formula over the other counters. */
function profitOf(
  counters: Partial<Record<KsmCounter, number>>,
  trackedPages: number | undefined,
  pageSize: number,
): { bytes: number; source: 'kernel' | 'estimate' } | undefined {
  if (counters.general_profit !== undefined) return { bytes: counters.general_profit, source: 'kernel' };
  if (counters.pages_sharing === undefined || trackedPages === undefined) return undefined;
  const merged = counters.pages_sharing + (counters.ksm_zero_pages ?? 0);
  return { bytes: merged * pageSize - trackedPages * RMAP_ITEM_BYTES, source: 'estimate' };
}

function fullScanSeconds(knobs: KnobSnapshot, trackedPages: number | undefined): number | undefined {
  if (knobs.advisor_mode === 'scan-time' && knobs.advisor_target_scan_time !== undefined) return Number(knobs.advisor_target_scan_time);
  const perWakeup = Number(knobs.pages_to_scan);
  const sleepMs = Number(knobs.sleep_millisecs);
  if (!trackedPages || !perWakeup || Number.isNaN(sleepMs)) return undefined;
  return (Math.ceil(trackedPages / perWakeup) * sleepMs) / 1000;
}
