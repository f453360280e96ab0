import { readFileSync } from 'node:fs';

/** One mapping of /proc/PID/smaps, as the test oracle reads it. */
export interface SmapsMapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  anonymousKb: number;
  flags: string[];
}

/** Parses /proc/PID/smaps independently of lib/, so tests check the library against the kernel. */
export function readSmaps(pid: number | 'self' = 'self'): SmapsMapping[] {
  const mappings: SmapsMapping[] = [];
  let current: SmapsMapping | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      current = {
        start: BigInt(`0x${header[1]}`),
        end: BigInt(`0x${header[2]}`),
        perms: header[3] ?? '',
        path: header[4] ?? '',
        anonymousKb: 0,
        flags: [],
      };
      mappings.push(current);
    } else if (current && line.startsWith('Anonymous:')) {
      current.anonymousKb = Number(/(\d+)/.exec(line)?.[1] ?? 0);
    } else if (current && line.startsWith('VmFlags:')) {
      current.flags = line.slice('VmFlags:'.length).trim().split(/\s+/);
    }
  }
  return mappings;
}

/** Anonymous kB in `mg` mappings ÷ all anonymous kB, the project's definition of coverage. */
export function coverage(pid: number | 'self' = 'self'): { mergeableKb: number; anonymousKb: number; ratio: number; vmas: number } {
  const mappings = readSmaps(pid);
  let mergeableKb = 0;
  let anonymousKb = 0;
  for (const m of mappings) {
    anonymousKb += m.anonymousKb;
    if (m.flags.includes('mg')) mergeableKb += m.anonymousKb;
  }
  return { mergeableKb, anonymousKb, ratio: anonymousKb === 0 ? 0 : mergeableKb / anonymousKb, vmas: mappings.length };
}

/** Total size in bytes of the mappings marked `mg`. */
export function mergeableMappedBytes(pid: number | 'self' = 'self'): bigint {
  return readSmaps(pid)
    .filter((m) => m.flags.includes('mg'))
    .reduce((sum, m) => sum + (m.end - m.start), 0n);
}

/**
 * Whether prctl(PR_SET_MEMORY_MERGE) is on for a process: ksm_stat's ksm_merge_any
 * line where the kernel writes it, else whether a mapping of a file (which madvise
 * never marks) carries `mg`.
 */
export function mergesWholeProcess(pid: number | 'self' = 'self'): boolean {
  const line = /^ksm_merge_any: (yes|no)$/m.exec(readFileSync(`/proc/${pid}/ksm_stat`, 'utf8'));
  if (line) return line[1] === 'yes';
  return readSmaps(pid).some((mapping) => mapping.path.startsWith('/') && mapping.flags.includes('mg'));
}
