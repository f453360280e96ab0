import { readFileSync } from 'node:fs';
import { KsmError } from '../core/errors.js';

/** A mapping of a process that holds private anonymous pages KSM could merge. */
export interface AnonymousVma {
  start: number;
  end: number;
  /** VmFlags has `mg`: ksmd scans it. */
  advised: boolean;
  /** The kernel's `Anonymous:` figure for the mapping. */
  anonymousBytes: number;
}

// VM_IO, VM_PFNMAP, VM_HUGETLB and VM_MIXEDMAP: KSM never merges these, and their
// memory is not ordinary pages to read.
const NEVER_MERGED_FLAGS = new Set(['io', 'pf', 'ht', 'mm']);

/**
 * The private mappings of `pid` holding anonymous pages (copied-on-write pages of
 * private file mappings included), from /proc/PID/smaps. Throws a KsmError with the
 * errno code when the file cannot be read (no such process, no ptrace rights).
 */
export function readAnonymousVmas(pid: number): AnonymousVma[] {
  const file = `/proc/${pid}/smaps`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw KsmError.fromNode('readAnonymousVmas', error, `cannot read ${file}: ${(error as Error).message}`);
  }
  const vmas: AnonymousVma[] = [];
  let current: (AnonymousVma & { isPrivate: boolean }) | undefined;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S\S\S(\S)/.exec(line);
    if (header) {
      current = {
        start: parseInt(header[1] ?? '', 16),
        end: parseInt(header[2] ?? '', 16),
        advised: false,
        anonymousBytes: 0,
        isPrivate: header[3] === 'p',
      };
    } else if (current && line.startsWith('Anonymous:')) {
      current.anonymousBytes = Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024;
    } else if (current && line.startsWith('VmFlags:')) {
      // VmFlags is the last line of each mapping's block.
      const flags = line.slice('VmFlags:'.length).trim().split(/\s+/);
      const { isPrivate, ...vma } = current;
      if (isPrivate && vma.anonymousBytes > 0 && !flags.some((flag) => NEVER_MERGED_FLAGS.has(flag))) {
        vmas.push({ ...vma, advised: flags.includes('mg') });
      }
      current = undefined;
    }
  }
  return vmas;
}
