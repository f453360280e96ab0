// What ksmd did to the attached processes, from the kernel's own counters.
import { readFileSync } from 'node:fs';
import { readKsmCounter } from '../helpers/ksmd.js';
import { sleep } from './targets.js';

/** /proc/PID/ksm_merging_pages: the process's pages mapped to a KSM page. */
export function mergingPages(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8').trim());
}

/** Anonymous kB in mappings advised mergeable (`mg`) ÷ all anonymous kB, from smaps. */
export function coverage(pid: number): number {
  let advised = 0;
  let total = 0;
  // Each mapping's Anonymous: line comes before its VmFlags: line.
  let anonymous = 0;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const kb = /^Anonymous:\s+(\d+) kB/.exec(line);
    if (kb) {
      anonymous = Number(kb[1]);
      total += anonymous;
    } else if (line.startsWith('VmFlags:')) {
      if (/ mg\b/.test(line)) advised += anonymous;
      anonymous = 0;
    }
  }
  return total === 0 ? 0 : advised / total;
}

/**
 * Waits until the processes' merged pages stop growing for three full scans of
 * ksmd (and some merged), or the timeout; returns the final sum.
 */
export async function settleMerging(pids: readonly number[], timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  const sum = (): number => pids.reduce((total, pid) => total + mergingPages(pid), 0);
  let merging = sum();
  let scansAtGrowth = readKsmCounter('full_scans');
  while (Date.now() - started < timeoutMs) {
    await sleep(250);
    const now = sum();
    const scans = readKsmCounter('full_scans');
    if (now > merging) scansAtGrowth = scans;
    merging = now;
    if (now > 0 && scans - scansAtGrowth >= 3) break;
  }
  return merging;
}
