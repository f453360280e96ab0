// What `ksm attach` refuses before any ptrace call: processes it must never touch
// (itself, one already traced), and ones that need --force because merging them
// would cross a security boundary or risk killing them.
import { readFileSync, readlinkSync } from 'node:fs';
import { KsmError } from '../core/errors.js';

/** /proc/PID/stat's flag of kernel threads (include/linux/sched.h). */
const PF_KTHREAD = 0x00200000;
const CAP_SYS_PTRACE = 19n;

/** The parts of /proc/PID/status the checks read. */
export interface ProcessCredentials {
  /** Real, effective, saved and file-system IDs. */
  uids: number[];
  gids: number[];
  capEff: bigint;
  tracerPid: number;
  /** 0 none, 1 strict, 2 filter. */
  seccomp: number;
}

/** Parses the Uid/Gid/CapEff/TracerPid/Seccomp lines of a status file. */
export function parseCredentials(status: string): ProcessCredentials {
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  const ids = (name: string): number[] => field(name).split(/\s+/).filter(Boolean).map(Number);
  return {
    uids: ids('Uid'),
    gids: ids('Gid'),
    capEff: BigInt(`0x${field('CapEff') || '0'}`),
    tracerPid: Number(field('TracerPid') || 0),
    seccomp: Number(field('Seccomp') || 0),
  };
}

function readStatus(operation: string, pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new KsmError(operation, 'ESRCH', `no process ${pid}`);
    throw KsmError.fromNode(operation, error, `cannot read /proc/${pid}/status`);
  }
}

/** The command name in /proc/PID/comm, or `?`. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

function isKernelThread(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command, which may itself hold spaces and parentheses.
    const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
    // The flag decides; a process that is exiting has lost its exe too, and is no kernel thread.
    if (Number.isInteger(flags)) return (flags & PF_KTHREAD) !== 0;
  } catch {
    return false;
  }
  try {
    readlinkSync(`/proc/${pid}/exe`);
    return false;
  } catch (error) {
    // Kernel threads have no executable; EACCES means there is one we may not see.
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

const allSame = (ids: readonly number[]): boolean => ids.every((id) => id === ids[0]);

/**
 * Why attaching to `pid` needs --force, or undefined when it does not; throws
 * EREFUSED for what --force cannot allow (this process, an already traced one).
 */
export function attachRefusal(operation: string, pid: number, self: ProcessCredentials = parseCredentials(readStatus(operation, process.pid))): string | undefined {
  if (pid === process.pid) throw new KsmError(operation, 'EREFUSED', `process ${pid} is this process itself`);
  const status = readStatus(operation, pid);
  if (/^State:\s*[ZX]/m.test(status)) throw new KsmError(operation, 'ESRCH', `process ${pid} has exited`);
  const target = parseCredentials(status);
  if (target.tracerPid !== 0) {
    throw new KsmError(operation, 'EBUSY', `process ${pid} is already traced by process ${target.tracerPid} (${commandOf(target.tracerPid)}); a process has one tracer at a time`);
  }
  if (isKernelThread(pid)) return `process ${pid} (${commandOf(pid)}) is a kernel thread: it has no user memory to merge`;
  if (!allSame(target.uids) || !allSame(target.gids)) {
    return `process ${pid} runs setuid or setgid (Uid ${target.uids.join(' ')}, Gid ${target.gids.join(' ')}): merging its memory opens a side channel into a privileged program`;
  }
  const mayTraceOthers = (self.capEff & (1n << CAP_SYS_PTRACE)) !== 0n;
  const ownUid = self.uids[1];
  if (!mayTraceOthers && target.uids.some((uid) => uid !== ownUid)) {
    return `process ${pid} belongs to user ${target.uids[0]}: tracing another user's process needs root or CAP_SYS_PTRACE`;
  }
  const extraCaps = target.capEff & ~self.capEff;
  if (extraCaps !== 0n) {
    return `process ${pid} holds capabilities this process lacks (CapEff ${target.capEff.toString(16)} vs ${self.capEff.toString(16)}): it is privileged`;
  }
  if (target.seccomp === 2) {
    return `process ${pid} runs under a seccomp filter: if the filter forbids prctl or madvise, the kernel may kill the process when they run in it`;
  }
  return undefined;
}
