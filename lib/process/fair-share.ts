// Fair-share saving: a KSM page mapped k times saves k−1 pages, so each of its k
// mappings is credited (k−1)/k of a page. Summed over any set of processes that holds
// every mapping of its KSM pages, the credits equal what the host saves; the kernel's
// ksm_process_profit instead credits every mapping a whole page.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { KsmError } from '../core/errors.js';
import { checkInteger, describe } from '../core/validate.js';
import { systemPageSize } from '../kernel/page-size.js';

/** Fair-share savings of a set of processes, or why they cannot be had. */
export type FairShare =
  | {
      available: true;
      /** pid → bytes credited. Processes that exited during the scan are absent. */
      savedBytes: Map<number, number>;
      /** The sum of savedBytes. */
      totalSavedBytes: number;
    }
  | { available: false; reason: string };

const MAX_PID = 2 ** 22; // PID_MAX_LIMIT on 64-bit
const PAGEMAP_CHUNK = 65_536; // entries per pagemap read: 512 KiB, 256 MiB of address space
const FRAME_GAP = 32; // sorted frames this close are read in one kpageflags/kpagecount read
const FRAME_RUN = 65_536; // most frames per kpageflags/kpagecount read
const KPF_KSM = 1 << 21;

// pagemap entry, high 32 bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PRESENT = 1 << 31; // bit 63
const PM_FILE_OR_SHARED_ANON = 1 << 29; // bit 61: KSM pages are private anonymous
const PM_MMAP_EXCLUSIVE = 1 << 24; // bit 56: mapped once, so saves nothing even if KSM
const PFN_HIGH_MASK = 0x7f_ffff; // bits 32–54

/**
 * Each process's fair share of what KSM saves, in bytes: for every KSM page it maps
 * (PFN from /proc/PID/pagemap, KPF_KSM from /proc/kpageflags), (k−1)/k of a page,
 * where k is the page's mapping count across all processes (/proc/kpagecount). Pages
 * KSM merged with the kernel's zero page (use_zero_pages) save a whole page each per
 * mapping: they are counted from ksm_zero_pages of /proc/PID/ksm_stat, because in
 * pagemap they look like any never-written page. Needs root (CAP_SYS_ADMIN): without
 * it the kernel hides page frame numbers, and the result says so.
 *
 * A snapshot, not atomic: pages ksmd merges or unmerges during the scan may be seen
 * in either state.
 *
 * @example
 * const share = fairShareSaved([1234, 5678]);
 * if (share.available) console.log(share.savedBytes.get(1234), share.totalSavedBytes);
 */
export function fairShareSaved(pids: readonly number[]): FairShare {
  const operation = 'fairShareSaved';
  if (!Array.isArray(pids)) throw new TypeError(`${operation}: pids must be an array of process ids (got ${describe(pids)})`);
  pids.forEach((pid, index) => checkInteger(operation, `pids[${index}]`, pid, 1, MAX_PID));
  if (process.platform !== 'linux') return { available: false, reason: `KSM is a Linux kernel feature; this is ${process.platform}` };
  const files = openFrameFiles();
  if ('reason' in files) return { available: false, reason: files.reason };
  try {
    const pageSize = systemPageSize();
    const scans = new Map<number, ProcessScan>();
    for (const pid of new Set(pids)) {
      const scan = scanProcess(pid);
      if (scan === 'pfns-hidden') return { available: false, reason: PFNS_HIDDEN };
      if (scan !== undefined) scans.set(pid, scan);
    }
    const shares = ksmShares([...scans.values()].map((scan) => scan.frames), files);
    const savedBytes = new Map<number, number>();
    let totalSavedBytes = 0;
    for (const [pid, scan] of scans) {
      let pages = scan.zeroPages;
      scan.frames.forEach((frame, i) => (pages += (shares.get(frame) ?? 0) * (scan.repeats[i] ?? 1)));
      const bytes = Math.round(pages * pageSize);
      savedBytes.set(pid, bytes);
      totalSavedBytes += bytes;
    }
    return { available: true, savedBytes, totalSavedBytes };
  } finally {
    closeSync(files.counts);
    closeSync(files.flags);
  }
}

const PFNS_HIDDEN = '/proc/PID/pagemap shows page frame numbers only to CAP_SYS_ADMIN: run as root on the host (not in a container)';

interface FrameFiles {
  counts: number;
  flags: number;
}

function openFrameFiles(): FrameFiles | { reason: string } {
  let counts: number | undefined;
  try {
    counts = openSync('/proc/kpagecount', 'r');
    return { counts, flags: openSync('/proc/kpageflags', 'r') };
  } catch (error) {
    if (counts !== undefined) closeSync(counts);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return { reason: '/proc/kpagecount and /proc/kpageflags are readable only by root: fair-share savings need root' };
    if (code === 'ENOENT') return { reason: '/proc/kpagecount is missing: the kernel lacks CONFIG_PROC_PAGE_MONITOR' };
    return { reason: `cannot open /proc/kpagecount: ${(error as Error).message}` };
  }
}

interface ProcessScan {
  /**
   * Frames of present private anonymous pages mapped more than once, with how many
   * pages in a row map each: runs of one frame are common (the zero page under memory
   * only read, one KSM page for a region of one repeated value).
   */
  frames: number[];
  repeats: number[];
  /** ksm_zero_pages: pages KSM replaced with the zero page. */
  zeroPages: number;
}

/** undefined when the process is gone or its files cannot be read. */
function scanProcess(pid: number): ProcessScan | 'pfns-hidden' | undefined {
  const counters = ksmCounters(pid);
  if (counters === 'gone') return undefined;
  const scan: ProcessScan = { frames: [], repeats: [], zeroPages: counters.zeroPages ?? 0 };
  // A process with no merged page maps no KSM page worth crediting; skip its page tables.
  if (counters.mergingPages === 0) return scan;
  const maps = readProc(pid, 'maps');
  if (maps === undefined) return undefined;
  let pagemap: number;
  try {
    pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
  } catch {
    return undefined;
  }
  try {
    for (const range of candidateRanges(maps)) {
      if (readFrames(pagemap, range, scan) === 'pfns-hidden') return 'pfns-hidden';
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw new KsmError('fairShareSaved', 'EIO', `cannot read /proc/${pid}/pagemap: ${(error as Error).message}`, { cause: error });
  } finally {
    closeSync(pagemap);
  }
  return scan;
}

/** ksm_merging_pages and ksm_zero_pages where the kernel has them; 'gone' once the process exited. */
function ksmCounters(pid: number): { mergingPages?: number; zeroPages?: number } | 'gone' {
  const stat = readProc(pid, 'ksm_stat');
  if (stat !== undefined) {
    const field = (name: string): number | undefined => {
      const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(stat);
      return match ? Number(match[1]) : undefined;
    };
    return { mergingPages: field('ksm_merging_pages'), zeroPages: field('ksm_zero_pages') };
  }
  const merging = readProc(pid, 'ksm_merging_pages');
  if (merging !== undefined) return { mergingPages: Number(merging.trim()) };
  return readProc(pid, 'stat') === undefined ? 'gone' : {};
}

/** First and last page index of the mappings that can hold KSM pages. */
function* candidateRanges(maps: string): Generator<[number, number]> {
  const pageSize = systemPageSize();
  for (const line of maps.split('\n')) {
    const match = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (!match) continue;
    const [, start = '', end = '', perms = '', path = ''] = match;
    // KSM merges private anonymous pages only, including copied-on-write pages of private
    // file mappings. PROT_NONE reservations (vast and empty) and the vDSO are skipped.
    if (perms[3] !== 'p' || perms.startsWith('---') || path.startsWith('[v')) continue;
    yield [parseInt(start, 16) / pageSize, parseInt(end, 16) / pageSize];
  }
}

const HIGH = endianness() === 'LE' ? 1 : 0;
const pagemapBuffer = Buffer.alloc(PAGEMAP_CHUNK * 8);
const pagemapWords = new Uint32Array(pagemapBuffer.buffer, pagemapBuffer.byteOffset, PAGEMAP_CHUNK * 2);

function readFrames(pagemap: number, [first, last]: [number, number], { frames, repeats }: ProcessScan): 'pfns-hidden' | undefined {
  for (let page = first; page < last; page += PAGEMAP_CHUNK) {
    const count = Math.min(PAGEMAP_CHUNK, last - page);
    const got = readSync(pagemap, pagemapBuffer, 0, count * 8, page * 8) / 8;
    for (let i = 0; i < got; i++) {
      const high = pagemapWords[2 * i + HIGH] ?? 0;
      if ((high & (PM_PRESENT | PM_FILE_OR_SHARED_ANON | PM_MMAP_EXCLUSIVE)) !== PM_PRESENT) continue;
      const frame = (high & PFN_HIGH_MASK) * 2 ** 32 + (pagemapWords[2 * i + 1 - HIGH] ?? 0);
      if (frame === 0) return 'pfns-hidden';
      const last = frames.length - 1;
      if (last >= 0 && frames[last] === frame) {
        repeats[last] = (repeats[last] ?? 1) + 1;
      } else {
        frames.push(frame);
        repeats.push(1);
      }
    }
    if (got < count) return undefined; // the mapping went away under us
  }
  return undefined;
}

/** Frame → pages credited per mapping, (k−1)/k, for the KSM pages among `frameLists`. */
function ksmShares(frameLists: number[][], files: FrameFiles): Map<number, number> {
  const candidates = uniqueSorted(frameLists);
  // kpageflags for every candidate, kpagecount only for the KSM pages among them.
  const ksmFrames: number[] = [];
  readFrameTable(files.flags, candidates, (frame, flags) => {
    if ((Number(flags & 0xffff_ffffn) & KPF_KSM) !== 0) ksmFrames.push(frame);
  });
  const shares = new Map<number, number>();
  readFrameTable(files.counts, ksmFrames, (frame, mappings) => {
    if (mappings > 1n) shares.set(frame, Number(mappings - 1n) / Number(mappings));
  });
  return shares;
}

function uniqueSorted(lists: number[][]): number[] {
  let total = 0;
  for (const list of lists) total += list.length;
  const sorted = new Float64Array(total);
  let at = 0;
  for (const list of lists) for (const frame of list) sorted[at++] = frame;
  sorted.sort();
  const unique: number[] = [];
  for (const frame of sorted) if (unique[unique.length - 1] !== frame) unique.push(frame);
  return unique;
}

const tableWords = new BigUint64Array(FRAME_RUN);
const tableBytes = Buffer.from(tableWords.buffer);

/**
 * Reads the 64-bit entries of a /proc/kpage* table for sorted `frames`: frames close
 * together in one read (the kernel computes every entry read, so long gaps cost more
 * than another read), the others one by one.
 */
function readFrameTable(fd: number, frames: readonly number[], visit: (frame: number, value: bigint) => void): void {
  for (let i = 0; i < frames.length; ) {
    const first = frames[i] ?? 0;
    let j = i;
    while (j + 1 < frames.length && (frames[j + 1] ?? 0) - first < FRAME_RUN && (frames[j + 1] ?? 0) - (frames[j] ?? 0) <= FRAME_GAP) j++;
    const length = (frames[j] ?? 0) - first + 1;
    const got = readSync(fd, tableBytes, 0, length * 8, first * 8) / 8;
    for (let k = i; k <= j; k++) {
      const index = (frames[k] ?? 0) - first;
      if (index < got) visit(frames[k] ?? 0, tableWords[index] ?? 0n);
    }
    i = j + 1;
  }
}

function readProc(pid: number, name: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${name}`, 'latin1');
  } catch {
    return undefined;
  }
}
