import { accessSync, constants } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { readAnonymousVmas, type AnonymousVma } from '../process/anonymous-vmas.js';
import { KsmError, notSupportedError } from '../core/errors.js';
import { loadNative, type NativeAddon, type NativeCensus, type NativeCensusProcess, type NativeCensusTask } from '../core/addon.js';
import { processName } from '../process/select.js';
import { readKsmNumber } from '../kernel/sysfs.js';

/** Part of an address space, [start, end). */
export interface AddressRange {
  start: number;
  end: number;
}

/** A process to analyse: its PID, or its PID and the address ranges to restrict the analysis to. */
export type AnalyzeTarget = number | { pid: number; ranges?: readonly AddressRange[] };

/** What analyzeMemory() found in one process. */
export interface ProcessAnalysis {
  pid: number;
  command: string | undefined;
  /** Why the process could not be read (fully or at all); absent when it was. */
  error?: { code: string; message: string };
  /** Resident private anonymous memory: what KSM could ever merge. */
  residentAnonymousBytes: number;
  /** The part of it in mappings advised mergeable (`mg`), which ksmd scans. */
  advisedBytes: number;
  /** advisedBytes ÷ residentAnonymousBytes (0 with no anonymous memory). */
  coverage: number;
  zeroBytes: number;
  /** Pages identical to another page of the same process. */
  duplicateBytes: number;
  /** Pages mapped to a page KSM has merged; undefined without root (no PFNs). */
  ksmBytes: number | undefined;
}

/** The ideal saving: every duplicate page merged, split by where the duplicates are. */
export interface IdealSaving {
  bytes: number;
  /** Zero-filled pages. */
  zeroBytes: number;
  /** Duplicates inside one process. */
  withinProcessBytes: number;
  /** Duplicates found only in other processes. */
  acrossProcessesBytes: number;
}

/** The result of analyzeMemory(). */
export interface MemoryAnalysis {
  pageSize: number;
  processes: ProcessAnalysis[];
  residentAnonymousBytes: number;
  /** What would remain with every duplicate merged. */
  uniqueBytes: number;
  ideal: IdealSaving;
  /** The ideal saving among advised pages alone: what ksmd can reach now. */
  idealAdvisedBytes: number;
  /** What advising the rest would add. */
  idealUnadvisedBytes: number;
  advisedBytes: number;
  coverage: number;
  /** Already saved by KSM among these processes; undefined without root (no PFNs). */
  mergedBytes: number | undefined;
  seconds: number;
  /** Resident anonymous bytes analysed per second. */
  bytesPerSecond: number;
}

/**
 * Predicts what KSM could save for some processes, without turning anything on:
 * reads every resident private anonymous page (/proc/PID/pagemap and /proc/PID/mem,
 * so root or ptrace rights are needed), digests it natively on a worker thread and
 * counts identical contents. The ideal follows the kernel's knobs: groups larger than
 * max_page_sharing keep one copy per that many pages, and with use_zero_pages=1 zero
 * pages cost nothing. Processes that cannot be read are listed with the reason.
 */
export async function analyzeMemory(targets: readonly AnalyzeTarget[]): Promise<MemoryAnalysis> {
  const wanted = validateTargets(targets);
  const { tasks, unreadable } = censusTasks(wanted);
  const census = await censusPages('analyzeMemory')(tasks, {
    maxPageSharing: readKsmNumber('max_page_sharing') ?? 256,
    useZeroPages: readKsmNumber('use_zero_pages') === 1,
    contents: true,
  });
  return summarize(wanted, census, unreadable, pfnsVisible());
}

/**
 * What KSM saves among these processes right now: their pages mapped to KSM pages
 * minus the distinct KSM pages. Exact, and unlike pages_sharing blind to other
 * processes; it reads only pagemap and /proc/kpageflags, no page contents, so it is
 * cheap enough to poll. Undefined without root, which the physical page numbers need.
 * Processes that cannot be read are left out.
 */
export async function measureMergedBytes(pids: readonly number[]): Promise<number | undefined> {
  const wanted = validateTargets(pids);
  if (!pfnsVisible()) return undefined;
  const census = await censusPages('measureMergedBytes')(censusTasks(wanted).tasks, { maxPageSharing: 256, useZeroPages: false, contents: false });
  const ksmMapped = census.processes.reduce((sum, p) => sum + p.ksmPages, 0);
  return (ksmMapped - census.totals.ksmDistinctPages) * census.pageSize;
}

function censusPages(operation: string): NativeAddon['censusPages'] {
  const native = loadNative();
  if (!native.addon) throw notSupportedError(operation, native.reason);
  return native.addon.censusPages.bind(native.addon);
}

/** The mappings to read of each process; those whose smaps cannot be read, with the error. */
function censusTasks(wanted: ReadonlyArray<{ pid: number; ranges?: readonly AddressRange[] }>): {
  tasks: NativeCensusTask[];
  unreadable: Map<number, KsmError>;
} {
  const unreadable = new Map<number, KsmError>();
  const tasks: NativeCensusTask[] = [];
  for (const { pid, ranges } of wanted) {
    try {
      tasks.push({ pid, ranges: clip(readAnonymousVmas(pid), ranges).flatMap((v) => [v.start, v.end, v.advised ? 1 : 0]) });
    } catch (error) {
      if (!(error instanceof KsmError)) throw error;
      unreadable.set(pid, error);
    }
  }
  return { tasks, unreadable };
}

function validateTargets(targets: readonly AnalyzeTarget[]): Array<{ pid: number; ranges?: readonly AddressRange[] }> {
  if (!Array.isArray(targets)) throw new TypeError('expected an array of PIDs or { pid, ranges } objects');
  return targets.map((target) => {
    const { pid, ranges } = typeof target === 'number' ? { pid: target, ranges: undefined } : target;
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new RangeError(`a PID must be a positive whole number, got ${String(pid)}`);
    for (const range of ranges ?? []) {
      if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start) {
        throw new RangeError(`address range of PID ${pid} must have whole numbers 0 ≤ start ≤ end, got ${range.start}..${range.end}`);
      }
    }
    return { pid, ranges };
  });
}

/** The parts of the mappings inside the requested ranges (all of them when none are given). */
function clip(vmas: AnonymousVma[], ranges: readonly AddressRange[] | undefined): AnonymousVma[] {
  if (ranges === undefined) return vmas;
  return vmas.flatMap((vma) =>
    ranges
      .map((range) => ({ ...vma, start: Math.max(vma.start, range.start), end: Math.min(vma.end, range.end) }))
      .filter((part) => part.end > part.start),
  );
}

/** PFNs in pagemap and /proc/kpageflags need CAP_SYS_ADMIN; without them merged pages are invisible. */
function pfnsVisible(): boolean {
  try {
    accessSync('/proc/kpageflags', constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function summarize(
  wanted: ReadonlyArray<{ pid: number }>,
  census: NativeCensus,
  unreadable: ReadonlyMap<number, KsmError>,
  ksmVisible: boolean,
): MemoryAnalysis {
  const page = census.pageSize;
  const scanned = new Map(census.processes.map((p) => [p.pid, p]));
  const processes = wanted.map(({ pid }): ProcessAnalysis => {
    const found = scanned.get(pid);
    const early = unreadable.get(pid);
    const error = early ? describe(early.code, early.message) : found ? nativeError(found) : undefined;
    const pages = found?.pages ?? 0;
    return {
      pid,
      command: processName(pid),
      ...(error ? { error } : {}),
      residentAnonymousBytes: pages * page,
      advisedBytes: (found?.advisedPages ?? 0) * page,
      coverage: pages === 0 ? 0 : (found?.advisedPages ?? 0) / pages,
      zeroBytes: (found?.zeroPages ?? 0) * page,
      duplicateBytes: (found?.duplicatePages ?? 0) * page,
      ksmBytes: ksmVisible ? (found?.ksmPages ?? 0) * page : undefined,
    };
  });
  const t = census.totals;
  const within = Math.min(t.withinSavingPages, t.idealPages - t.zeroSavingPages);
  const ksmMapped = census.processes.reduce((sum, p) => sum + p.ksmPages, 0);
  return {
    pageSize: page,
    processes,
    residentAnonymousBytes: t.pages * page,
    uniqueBytes: (t.pages - t.idealPages) * page,
    ideal: {
      bytes: t.idealPages * page,
      zeroBytes: t.zeroSavingPages * page,
      withinProcessBytes: within * page,
      acrossProcessesBytes: (t.idealPages - t.zeroSavingPages - within) * page,
    },
    idealAdvisedBytes: t.idealAdvisedPages * page,
    idealUnadvisedBytes: (t.idealPages - t.idealAdvisedPages) * page,
    advisedBytes: t.advisedPages * page,
    coverage: t.pages === 0 ? 0 : t.advisedPages / t.pages,
    mergedBytes: ksmVisible ? (ksmMapped - t.ksmDistinctPages) * page : undefined,
    seconds: census.seconds,
    bytesPerSecond: census.seconds > 0 ? (t.pages * page) / census.seconds : 0,
  };
}

function nativeError(found: NativeCensusProcess): ProcessAnalysis['error'] {
  if (found.errno !== undefined) {
    return describe(getSystemErrorName(-found.errno), `${found.syscall ?? 'read'} failed`);
  }
  if (found.unreadablePages > 0) {
    return { code: 'EIO', message: `${found.unreadablePages} resident pages could not be read (freed or remapped during the scan)` };
  }
  return undefined;
}

/** The reason in the user's terms: what happened and what would fix it. */
function describe(code: string, detail: string): { code: string; message: string } {
  if (code === 'ENOENT' || code === 'ESRCH') return { code, message: 'no such process (it has exited)' };
  if ((code === 'EACCES' || code === 'EPERM') && process.getuid?.() === 0) {
    return { code, message: 'the kernel refuses even root here (another user namespace, or a ptrace or security-module restriction)' };
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return { code, message: 'cannot read its memory: run as root, or as its owner with ptrace allowed (kernel.yama.ptrace_scope)' };
  }
  return { code, message: detail };
}
