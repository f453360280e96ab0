// One reading of the machine for `ksm autotune`: memory, PSI, ksmd's counters and
// CPU time, and how much mergeable memory ksmd has not looked at yet.
import { readdirSync, readFileSync } from 'node:fs';
import { KsmError } from '../core/errors.js';
import { systemKsmStats } from '../kernel/system-stats.js';
import { coverageFromSmaps } from '../process/smaps.js';
import type { AutotuneSample } from './autotune-policy.js';
import { ksmdCpuSeconds } from './ksmd-cpu.js';

/** MemTotal and MemAvailable of /proc/meminfo, in bytes. */
export function readMemInfo(text: string = readFileSync('/proc/meminfo', 'utf8')): { totalBytes: number; availableBytes: number } {
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!match) throw new KsmError('runAutotune', 'EIO', `/proc/meminfo has no ${name} line`);
    return Number(match[1]) * 1024;
  };
  return { totalBytes: field('MemTotal'), availableBytes: field('MemAvailable') };
}

/** The `some avg10` of /proc/pressure/memory (percent of time some task waited on memory), or undefined without PSI. */
export function readMemoryPressure(file = '/proc/pressure/memory'): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const match = /^some avg10=([\d.]+)/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** What one process last looked like, so its smaps is read again only when its memory moved. */
interface CachedProcess {
  anonPages: number;
  mergeablePages: number;
  readAtMs: number;
}

/** smaps is read again when resident anonymous memory moved by more than this share, or this long after the last read. */
const SMAPS_MOVE = 0.02;
const SMAPS_MAX_AGE_MS = 60_000;

/** Unscanned pages below this count, or this share of a process, are churn, not new memory. */
const CHURN_PAGES = 256;
const CHURN_SHARE = 0.05;

/** Resident pages not backed by files or shmem (statm's resident − shared). */
function anonymousPages(pid: number): number {
  const [, resident = '0', shared = '0'] = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ');
  return Math.max(0, Number(resident) - Number(shared));
}

/**
 * Mergeable and not-yet-scanned pages over every process. Processes that opted in
 * are found by their ksm_stat (6.14+ says so; on older kernels every process with
 * ksm_stat counts). Under prctl every anonymous mapping is mergeable, so statm
 * gives the size; madvise needs smaps, the costly read, which is repeated only when
 * the process's resident anonymous memory moved or a minute passed.
 */
export class MergeableCensus {
  private readonly cache = new Map<number, CachedProcess>();
  /** Unscanned pages first seen, per process, and ksmd's full_scans then. */
  private readonly deficits = new Map<number, { pages: number; fullScans: number }>();
  /** Pages ksmd left unscanned through two whole scans (it cannot take them: not present, huge, pinned). */
  private readonly unscannable = new Map<number, number>();

  /** `fullScans` is ksmd's counter now: unscanned pages that outlast two full scans are not waiting for ksmd. */
  count(pageSize: number, nowMs: number, fullScans: number): { mergeablePages: number; unscannedPages: number } {
    let mergeablePages = 0;
    let unscannedPages = 0;
    const seen = new Set<number>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      const found = this.process(Number(entry), pageSize, nowMs);
      if (!found) continue;
      seen.add(Number(entry));
      mergeablePages += found.mergeablePages;
      unscannedPages += this.waiting(Number(entry), found, fullScans);
    }
    for (const known of [this.cache, this.deficits, this.unscannable]) {
      for (const pid of known.keys()) if (!seen.has(pid)) known.delete(pid);
    }
    return { mergeablePages, unscannedPages };
  }

  /**
   * The pages of one process that wait for ksmd's first look. A few percent of a
   * process come and go between scans (freed and new heap pages); a new process, or
   * one that grew, is unscanned in bulk.
   */
  private waiting(pid: number, found: { mergeablePages: number; rmapItems: number }, fullScans: number): number {
    const unscanned = Math.max(0, found.mergeablePages - found.rmapItems);
    const known = this.unscannable.get(pid);
    const floor = known === undefined ? 0 : Math.min(known, unscanned);
    if (known !== undefined) this.unscannable.set(pid, floor);
    const fresh = unscanned - floor;
    const churn = Math.max(CHURN_PAGES, found.mergeablePages * CHURN_SHARE);
    if (fresh <= churn) {
      this.deficits.delete(pid);
      return 0;
    }
    const since = this.deficits.get(pid);
    if (since === undefined || fresh > since.pages + churn) {
      this.deficits.set(pid, { pages: fresh, fullScans });
    } else if (fullScans - since.fullScans >= 2) {
      this.unscannable.set(pid, unscanned);
      this.deficits.delete(pid);
      return 0;
    }
    return fresh;
  }

  private process(pid: number, pageSize: number, nowMs: number): { mergeablePages: number; rmapItems: number } | undefined {
    try {
      // ksm_stat alone, not processKsmStats(): this runs for every process on every tick.
      const stat = readFileSync(`/proc/${pid}/ksm_stat`, 'latin1');
      const rmapMatch = /^ksm_rmap_items (\d+)/m.exec(stat);
      // Kernel threads have an empty ksm_stat.
      if (!rmapMatch) return undefined;
      const rmapItems = Number(rmapMatch[1]);
      const mergeable = /^ksm_mergeable: (\w+)/m.exec(stat)?.[1];
      const mergeAny = /^ksm_merge_any: yes/m.test(stat);
      const optedIn = mergeable === undefined || mergeable === 'yes' || mergeAny || rmapItems > 0;
      if (!optedIn) return undefined;
      const anonPages = anonymousPages(pid);
      if (mergeAny) return { mergeablePages: anonPages, rmapItems };
      let cached = this.cache.get(pid);
      const moved = cached === undefined || Math.abs(anonPages - cached.anonPages) > Math.max(256, cached.anonPages * SMAPS_MOVE);
      if (cached === undefined || moved || nowMs - cached.readAtMs > SMAPS_MAX_AGE_MS) {
        const smaps = readFileSync(`/proc/${pid}/smaps`, 'latin1');
        cached = { anonPages, mergeablePages: Math.round(coverageFromSmaps(smaps).mergeableAnonBytes / pageSize), readAtMs: nowMs };
        this.cache.set(pid, cached);
      }
      return { mergeablePages: cached.mergeablePages, rmapItems };
    } catch (error) {
      // The process ended, or its files are closed to us: it does not count.
      if ((error as NodeJS.ErrnoException).code !== undefined) return undefined;
      throw error;
    }
  }
}

/** Reads everything autotune decides on. `timeMs` is monotonic. */
export function readAutotuneSample(census: MergeableCensus): AutotuneSample {
  const timeMs = Number(process.hrtime.bigint() / 1_000_000n);
  const stats = systemKsmStats();
  const memory = readMemInfo();
  const { mergeablePages, unscannedPages } = census.count(stats.pageSize, timeMs, stats.counters.full_scans ?? 0);
  return {
    timeMs,
    pageSize: stats.pageSize,
    memTotalBytes: memory.totalBytes,
    memAvailableBytes: memory.availableBytes,
    pressureSomeAvg10: readMemoryPressure(),
    ksmdCpuSeconds: ksmdCpuSeconds(),
    fullScans: stats.counters.full_scans ?? 0,
    pagesToScan: Number(stats.knobs.pages_to_scan ?? 0),
    pagesScanned: stats.counters.pages_scanned,
    pagesSharing: stats.counters.pages_sharing ?? 0,
    pagesShared: stats.counters.pages_shared ?? 0,
    profitBytes: stats.profitBytes ?? 0,
    rmapItems: stats.trackedPages ?? 0,
    mergeablePages,
    unscannedPages,
  };
}
