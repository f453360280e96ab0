// Coverage from /proc/PID/smaps: how much of a process's anonymous memory lies in
// mappings advised mergeable (the `mg` VmFlag).

/** Anonymous memory in `mg` mappings against all anonymous memory of a process. */
export interface Coverage {
  /** Anonymous bytes in mappings with the `mg` flag. */
  mergeableAnonBytes: number;
  /** All anonymous bytes of the process. */
  anonBytes: number;
  /** mergeableAnonBytes ÷ anonBytes; 0 when the process has no anonymous memory. */
  ratio: number;
}

const ANONYMOUS = 'Anonymous:';
const VM_FLAGS = 'VmFlags:';

/** Sums smaps text. Each mapping's `Anonymous:` line comes before its `VmFlags:` line. */
export function coverageFromSmaps(smaps: string): Coverage {
  let anonKb = 0;
  let mergeableAnonKb = 0;
  let mappingAnonKb = 0;
  let lineStart = 0;
  while (lineStart < smaps.length) {
    let lineEnd = smaps.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = smaps.length;
    if (smaps.startsWith(ANONYMOUS, lineStart)) {
      mappingAnonKb = Number.parseInt(smaps.slice(lineStart + ANONYMOUS.length, lineEnd), 10) || 0;
      anonKb += mappingAnonKb;
    } else if (smaps.startsWith(VM_FLAGS, lineStart)) {
      if (hasFlag(smaps.slice(lineStart + VM_FLAGS.length, lineEnd), 'mg')) mergeableAnonKb += mappingAnonKb;
      mappingAnonKb = 0;
    }
    lineStart = lineEnd + 1;
  }
  return {
    mergeableAnonBytes: mergeableAnonKb * 1024,
    anonBytes: anonKb * 1024,
    ratio: anonKb === 0 ? 0 : mergeableAnonKb / anonKb,
  };
}

/**
 * Whether a file-backed mapping carries `mg`: only prctl(PR_SET_MEMORY_MERGE) marks
 * those (madvise(MADV_MERGEABLE) leaves them unmarked), so this tells prctl from
 * madvise on kernels whose ksm_stat has no ksm_merge_any line.
 */
export function marksFileMappings(smaps: string): boolean {
  let fileBacked = false;
  for (const line of smaps.split('\n')) {
    // A mapping's header: start-end perms offset dev inode [path]; inode 0 is anonymous.
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)/.exec(line);
    if (header) fileBacked = header[1] !== '0';
    else if (fileBacked && line.startsWith(VM_FLAGS) && hasFlag(line.slice(VM_FLAGS.length), 'mg')) return true;
  }
  return false;
}

function hasFlag(flags: string, flag: string): boolean {
  return flags.split(' ').includes(flag);
}
