// The exporter's walk over /proc: one read of ksm_stat per process, more reads only
// for the few that use KSM, so a scrape of a busy host stays cheap. `ksm top`
// (process/top.ts) reads more per process; this keeps to what the metrics need.
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { systemPageSize } from '../kernel/page-size.js';
import { cgroupOf, type OptInMethod } from '../process/top.js';

/** One process that merges or opted in, as the exporter sees it. */
export interface ScannedProcess {
  pid: number;
  /** The program's name: its command line's first word without the folder, or [comm]. */
  command: string;
  /** Its cgroup path (see cgroupOf). */
  cgroup: string;
  mergingBytes: number;
  /** Undefined on kernels without the field (ksm_stat before 6.1, profit before 6.4, zero pages before 6.6). */
  rmapItems: number | undefined;
  zeroPages: number | undefined;
  zeroPageBytes: number | undefined;
  profitBytes: number | undefined;
  methods: OptInMethod[];
}

export interface ProcessScan {
  processes: ScannedProcess[];
  /** Processes read (kernel threads and the exporter itself excluded). */
  scanned: number;
  /** Processes whose KSM files this user may not read. */
  unreadable: number;
}

// One buffer for every read: /proc files are read whole with three system calls.
const buffer = Buffer.alloc(128 * 1024);

function readProc(pid: number, name: string): string | undefined | 'EACCES' {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/${name}`, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? 'EACCES' : undefined;
  }
  try {
    const length = readSync(fd, buffer, 0, buffer.length, null);
    return buffer.toString('latin1', 0, length);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

interface KsmStat {
  rmapItems?: number;
  zeroPages?: number;
  mergingPages?: number;
  profitBytes?: number;
  mergeAny?: boolean;
  mergeable?: boolean;
}

/** ksm_stat of a process that never touched KSM (6.14+): most processes, so compared whole rather than parsed. */
const UNTOUCHED = 'ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no\n';

function parseKsmStat(text: string): KsmStat {
  const stat: KsmStat = {};
  for (const line of text.split('\n')) {
    const space = line.lastIndexOf(' ');
    if (space < 0) continue;
    const name = line.slice(0, space).replace(/:$/, '');
    const value = line.slice(space + 1);
    if (name === 'ksm_rmap_items') stat.rmapItems = Number(value);
    else if (name === 'ksm_zero_pages') stat.zeroPages = Number(value);
    else if (name === 'ksm_merging_pages') stat.mergingPages = Number(value);
    else if (name === 'ksm_process_profit') stat.profitBytes = Number(value);
    else if (name === 'ksm_merge_any') stat.mergeAny = value === 'yes';
    else if (name === 'ksm_mergeable') stat.mergeable = value === 'yes';
  }
  return stat;
}

/** Every process that merges or opted in, most merged first. */
export function scanKsmProcesses(): ProcessScan {
  const pageSize = systemPageSize();
  const processes: ScannedProcess[] = [];
  let scanned = 0;
  let unreadable = 0;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let text = readProc(pid, 'ksm_stat');
    // Before 6.1 there is only ksm_merging_pages (5.19+).
    if (text === undefined) {
      const merging = readProc(pid, 'ksm_merging_pages');
      text = merging === undefined || merging === 'EACCES' ? merging : `ksm_merging_pages ${merging.trim()}`;
    }
    if (text === undefined) continue;
    // Kernel threads have no memory: their ksm_stat is empty.
    if (text === '') continue;
    scanned++;
    if (text === 'EACCES') {
      unreadable++;
      continue;
    }
    if (text === UNTOUCHED) continue;
    const stat = parseKsmStat(text);
    const mergingPages = stat.mergingPages ?? 0;
    // Before 6.14 the kernel does not say who opted in: rmap items show a process KSM has scanned.
    const inKsm = stat.mergeAny || stat.mergeable || mergingPages > 0 || (stat.rmapItems ?? 0) > 0;
    if (!inKsm) continue;
    const methods: OptInMethod[] = [];
    if (preloadsLibrary(pid)) methods.push('preload');
    if (stat.mergeAny) methods.push('prctl');
    else if (stat.mergeable) methods.push('madvise');
    if (methods.length === 0) methods.push('unknown');
    processes.push({
      pid,
      command: programName(pid),
      cgroup: cgroupOf(pid),
      mergingBytes: mergingPages * pageSize,
      rmapItems: stat.rmapItems,
      zeroPages: stat.zeroPages,
      zeroPageBytes: stat.zeroPages === undefined ? undefined : stat.zeroPages * pageSize,
      profitBytes: stat.profitBytes,
      methods,
    });
  }
  processes.sort((a, b) => b.mergingBytes - a.mergingBytes || a.pid - b.pid);
  return { processes, scanned, unreadable };
}

/** LD_PRELOAD, as the process was started with it, names the library. */
function preloadsLibrary(pid: number): boolean {
  const environ = readProc(pid, 'environ');
  if (environ === undefined || environ === 'EACCES') return false;
  const start = environ.startsWith('LD_PRELOAD=') ? 0 : environ.indexOf('\0LD_PRELOAD=') + 1;
  if (start === 0 && !environ.startsWith('LD_PRELOAD=')) return false;
  const end = environ.indexOf('\0', start);
  return /(^|[\s:=/])libksm_preload\.so/.test(environ.slice(start, end < 0 ? undefined : end));
}

function programName(pid: number): string {
  const cmdline = readProc(pid, 'cmdline');
  const first = cmdline === undefined || cmdline === 'EACCES' ? '' : (cmdline.split('\0')[0] ?? '');
  if (first) return first.slice(first.lastIndexOf('/') + 1).slice(0, 64);
  const comm = readProc(pid, 'comm');
  return `[${comm === undefined || comm === 'EACCES' ? '?' : comm.trim()}]`;
}
