import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Linux reports utime and stime in USER_HZ ticks; 100 everywhere but a few old architectures. */
let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

let ksmdPid: number | undefined;

/** The kernel thread named ksmd (a child of kthreadd, pid 2), found once and re-found if it goes. */
export function findKsmdPid(): number | undefined {
  if (ksmdPid !== undefined && statFields(ksmdPid)?.comm === 'ksmd') return ksmdPid;
  ksmdPid = undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields?.comm === 'ksmd' && fields.ppid === 2) {
      ksmdPid = Number(entry);
      break;
    }
  }
  return ksmdPid;
}

/** CPU seconds ksmd has used since boot (utime + stime), or undefined without KSM or /proc. */
export function ksmdCpuSeconds(): number | undefined {
  const pid = findKsmdPid();
  const fields = pid === undefined ? undefined : statFields(pid);
  return fields === undefined ? undefined : (fields.utime + fields.stime) / clockTicks();
}

function statFields(pid: number): { comm: string; ppid: number; utime: number; stime: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm may hold spaces and parentheses: the fields after it start at the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { comm, ppid: Number(rest[1]), utime: Number(rest[11]), stime: Number(rest[12]) };
}
