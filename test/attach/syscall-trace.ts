// Every system call one thread makes, through the kernel's raw_syscalls tracepoints
// in a private tracefs instance. strace cannot watch the injection: it is a ptrace
// tracer itself, and a process has one tracer at a time.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** x86_64 numbers of the calls the tests expect to see. */
const NAMES: Record<number, string> = { 28: 'madvise', 35: 'nanosleep', 157: 'prctl', 219: 'restart_syscall', 230: 'clock_nanosleep' };

export interface TracedCall {
  name: string;
  args: number[];
  /** The return value, when the call returned while the trace ran. */
  result: number | undefined;
}

function tracefsRoot(): { root: string; unmount?: string } {
  if (existsSync('/sys/kernel/tracing/instances')) return { root: '/sys/kernel/tracing' };
  const dir = mkdtempSync(join(tmpdir(), 'ksm-attach-tracefs-'));
  execFileSync('mount', ['-t', 'tracefs', 'nodev', dir]);
  return { root: dir, unmount: dir };
}

/** Parses the instance's `trace` text: enters in order, each with its exit's value. */
export function parseTrace(text: string): TracedCall[] {
  const calls: TracedCall[] = [];
  const open = new Map<number, TracedCall>();
  for (const line of text.split('\n')) {
    const enter = /sys_enter: NR (\d+) \(([0-9a-f, ]*)\)/.exec(line);
    if (enter) {
      const nr = Number(enter[1]);
      const call: TracedCall = { name: NAMES[nr] ?? `nr${nr}`, args: (enter[2] ?? '').split(', ').map((hex) => Number.parseInt(hex, 16)), result: undefined };
      calls.push(call);
      open.set(nr, call);
      continue;
    }
    const exit = /sys_exit: NR (\d+) = (-?\d+)/.exec(line);
    if (exit) {
      const nr = Number(exit[1]);
      const call = open.get(nr);
      if (call) call.result = Number(exit[2]);
      open.delete(nr);
    }
  }
  return calls;
}

/** Runs `fn` while tracing thread `tid`; resolves with the calls it made meanwhile. */
export async function withSyscallTrace(tid: number, fn: () => Promise<void>): Promise<TracedCall[]> {
  const { root, unmount } = tracefsRoot();
  const instance = join(root, 'instances', `ksm-attach-${process.pid}-${tid}`);
  mkdirSync(instance);
  try {
    for (const event of ['sys_enter', 'sys_exit']) {
      writeFileSync(join(instance, 'events', 'raw_syscalls', event, 'filter'), `common_pid == ${tid}`);
      writeFileSync(join(instance, 'events', 'raw_syscalls', event, 'enable'), '1');
    }
    await fn();
    writeFileSync(join(instance, 'tracing_on'), '0');
    return parseTrace(readFileSync(join(instance, 'trace'), 'utf8'));
  } finally {
    rmdirSync(instance);
    if (unmount) {
      execFileSync('umount', [unmount]);
      rmdirSync(unmount);
    }
  }
}
