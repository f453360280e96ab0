// One process's KSM figures: /proc/PID/ksm_merging_pages, /proc/PID/ksm_stat and
// coverage from /proc/PID/smaps.
import { existsSync, readFileSync } from 'node:fs';
import { type StrictOption, type Unsupported, isStrict, unsupported } from '../core/capability.js';
import { KsmError } from '../core/errors.js';
import { systemPageSize } from '../kernel/page-size.js';
import { type Coverage, coverageFromSmaps, marksFileMappings } from './smaps.js';
import { checkOptionalBoolean, checkInteger, checkOptions } from '../core/validate.js';

export type { Coverage } from './smaps.js';

/** Options of processKsmStats(). */
export interface ProcessKsmStatsOptions extends StrictOption {
  /** Read /proc/PID/smaps for coverage: the costly part on big processes. Default true. */
  coverage?: boolean;
}

/**
 * KSM figures of one process. A figure the kernel does not offer (older kernels)
 * or this user may not read (ksm_stat and ksm_merging_pages are readable by the
 * owner and root only) is absent, with the reason in `unavailable`.
 */
export interface ProcessKsmStats {
  supported: true;
  pid: number;
  /** Bytes per page, for the page counts below. */
  pageSize: number;
  /** Pages of this process currently merged by KSM (/proc/PID/ksm_merging_pages, Linux 5.19+). */
  mergingPages?: number;
  mergingBytes?: number;
  /** ksm_rmap_items of /proc/PID/ksm_stat (Linux 6.1+): pages KSM tracks; each costs the kernel 64 bytes. */
  rmapItems?: number;
  /** ksm_zero_pages (Linux 6.6+): pages merged with the kernel's zero page (use_zero_pages). */
  zeroPages?: number;
  zeroBytes?: number;
  /** ksm_process_profit (Linux 6.4+): bytes saved minus KSM's bookkeeping; negative when marking costs more than it saves. */
  profitBytes?: number;
  /**
   * prctl(PR_SET_MEMORY_MERGE) is on: ksm_merge_any where ksm_stat has it (6.14+), else
   * read from smaps (prctl marks file-backed mappings, which madvise never does).
   */
  mergeAny?: boolean;
  /** ksm_mergeable (Linux 6.14+): the process has mergeable memory at all. */
  mergeable?: boolean;
  /** From smaps; absent with `coverage: false`. */
  coverage?: Coverage;
  /** Why a figure is absent: keyed by the source it would come from. */
  unavailable: { mergingPages?: string; ksmStat?: string; coverage?: string };
}

const MAX_PID = 2 ** 22; // PID_MAX_LIMIT on 64-bit

/**
 * Reads one process's KSM figures. Throws a KsmError with code `ESRCH` when there
 * is no such process; every other unreadable file leaves its figures absent and
 * says why in `unavailable`.
 *
 * @example
 * const stats = processKsmStats();
 * if (stats.supported) console.log(stats.mergingBytes, stats.coverage?.ratio);
 */
export function processKsmStats(pid: number = process.pid, options?: ProcessKsmStatsOptions): ProcessKsmStats | (Unsupported & { pid: number }) {
  const operation = 'processKsmStats';
  checkInteger(operation, 'pid', pid, 1, MAX_PID);
  checkOptions(operation, options, ['coverage', 'strict']);
  checkOptionalBoolean(operation, 'options.coverage', options?.coverage);
  const strict = isStrict(operation, options);
  if (process.platform !== 'linux') {
    return { ...unsupported(operation, `KSM is a Linux kernel feature; this is ${process.platform}`, strict), pid };
  }
  const pageSize = systemPageSize();
  const stats: ProcessKsmStats = { supported: true, pid, pageSize, unavailable: {} };

  const mergingPages = readProcFile(pid, 'ksm_merging_pages', 'Linux 5.19');
  if (mergingPages.text !== undefined) stats.mergingPages = Number(mergingPages.text.trim());
  else stats.unavailable.mergingPages = mergingPages.reason;

  const ksmStat = readProcFile(pid, 'ksm_stat', 'Linux 6.1');
  if (ksmStat.text !== undefined) {
    // The same count as ksm_merging_pages, which stays the source when readable.
    const { mergingPages: statMergingPages, ...fields } = parseKsmStat(ksmStat.text);
    Object.assign(stats, fields);
    stats.mergingPages ??= statMergingPages;
  } else {
    stats.unavailable.ksmStat = ksmStat.reason;
  }

  if (stats.mergingPages !== undefined) stats.mergingBytes = stats.mergingPages * pageSize;
  if (stats.zeroPages !== undefined) stats.zeroBytes = stats.zeroPages * pageSize;

  if (options?.coverage !== false) {
    const smaps = readProcFile(pid, 'smaps', 'a kernel with CONFIG_PROC_PAGE_MONITOR');
    if (smaps.text !== undefined) {
      stats.coverage = coverageFromSmaps(smaps.text);
      stats.mergeAny ??= marksFileMappings(smaps.text);
    } else {
      stats.unavailable.coverage = smaps.reason;
    }
  }
  return stats;
}

type KsmStatFields = Pick<ProcessKsmStats, 'rmapItems' | 'zeroPages' | 'mergingPages' | 'profitBytes' | 'mergeAny' | 'mergeable'>;

// ksm_stat mixes "name value" lines with "name: yes|no" lines (6.14+).
const KSM_STAT_NUMBERS: Record<string, 'rmapItems' | 'zeroPages' | 'mergingPages' | 'profitBytes'> = {
  ksm_rmap_items: 'rmapItems',
  ksm_zero_pages: 'zeroPages',
  ksm_merging_pages: 'mergingPages',
  ksm_process_profit: 'profitBytes',
};
const KSM_STAT_FLAGS: Record<string, 'mergeAny' | 'mergeable'> = {
  ksm_merge_any: 'mergeAny',
  ksm_mergeable: 'mergeable',
};

function parseKsmStat(text: string): KsmStatFields {
  const fields: KsmStatFields = {};
  for (const line of text.split('\n')) {
    const match = /^(\w+):?\s+(\S+)\s*$/.exec(line);
    if (!match) continue;
    const [, name = '', value = ''] = match;
    const numberField = KSM_STAT_NUMBERS[name];
    const flagField = KSM_STAT_FLAGS[name];
    if (numberField && /^-?\d+$/.test(value)) fields[numberField] = Number(value);
    else if (flagField && (value === 'yes' || value === 'no')) fields[flagField] = value === 'yes';
  }
  return fields;
}

/** A /proc/PID file's text, or why it cannot be had; throws ESRCH when the process is gone. */
function readProcFile(pid: number, name: string, since: string): { text: string; reason?: undefined } | { text?: undefined; reason: string } {
  const file = `/proc/${pid}/${name}`;
  try {
    return { text: readFileSync(file, 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH' || !existsSync(`/proc/${pid}`)) {
      throw new KsmError('processKsmStats', 'ESRCH', `no process ${pid} (${file})`, { syscall: 'open', cause: error });
    }
    if (code === 'EACCES' || code === 'EPERM') return { reason: `${file} is readable only by the process's owner and root` };
    if (code === 'ENOENT') return { reason: `${file} does not exist: it needs ${since} or later` };
    return { reason: `cannot read ${file}: ${(error as Error).message}` };
  }
}
