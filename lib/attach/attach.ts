// attachProcess() and detachProcess(): KSM on or off in a process that is already
// running, by running prctl or madvise inside it under ptrace (see docs/attach.md).
import { KsmError } from '../core/errors.js';
import { checkInteger, checkOptionalBoolean, checkOptions, describe } from '../core/validate.js';
import { runHelper, type HelperReport } from './helper.js';
import { attachRefusal, commandOf } from './safety.js';

/** How to opt the process in: `auto` uses prctl where the kernel has it (6.4+), else madvise. */
export type AttachMode = 'auto' | 'prctl' | 'madvise';

/** Options of attachProcess() and detachProcess(). */
export interface AttachOptions {
  /** Default `auto`. For detachProcess, `auto` undoes whichever the process has. */
  mode?: AttachMode;
  /** Attach to a process the safety checks refuse: setuid or privileged, another user's, seccomp-filtered. */
  force?: boolean;
  /** How long the target's thread may stay stopped, in milliseconds (default 5000). */
  timeoutMs?: number;
  /** Aborting makes the helper give the thread back at once. */
  signal?: AbortSignal;
}

/** What attachProcess() or detachProcess() did. */
export interface AttachResult {
  pid: number;
  command: string;
  /** The thread that ran the calls. */
  tid: number;
  /** `prctl`: the whole process, mappings made later included. `madvise`: the mappings it had at that moment. */
  mode: 'prctl' | 'madvise';
  /** Whether `auto` fell back to madvise because the kernel refused prctl. */
  fellBack: boolean;
  /** Whether mappings the process makes later are covered too (prctl only). */
  coversLaterMappings: boolean;
  /** madvise: the mappings advised and their size; 0 with prctl. */
  mappings: number;
  bytes: number;
  /** madvise: mappings the call failed on (unmapped meanwhile, say), and the first errno name. */
  failedMappings: number;
  firstError: string | null;
  /** System calls run inside the process. */
  syscalls: number;
  /** Signals that arrived while the thread was stopped; each was delivered to the program. */
  signalsPassed: number;
  /** How long the thread was stopped. */
  stoppedMicroseconds: number;
}

const OPTION_NAMES = ['mode', 'force', 'timeoutMs', 'signal'] as const;
const MODES: readonly AttachMode[] = ['auto', 'prctl', 'madvise'];

/**
 * The warning every attach comes with: a merged page is shared between the
 * processes, and the time a write takes tells which pages another process holds.
 */
export const SAME_DOMAIN_WARNING =
  'merging is a side channel: a process can tell, by timing writes, which of its pages some other merged process also holds. ' +
  'Attach only processes of one security domain (same owner and trust), never ones holding secrets for others.';

function validate(operation: string, pid: unknown, options: AttachOptions | undefined): Required<Omit<AttachOptions, 'signal'>> & { signal?: AbortSignal } {
  checkInteger(operation, 'pid', pid, 1, 2 ** 22);
  checkOptions(operation, options, OPTION_NAMES);
  const mode = options?.mode ?? 'auto';
  if (typeof mode !== 'string') throw new TypeError(`${operation}: options.mode must be a string (got ${describe(mode)})`);
  if (!MODES.includes(mode)) throw new RangeError(`${operation}: options.mode must be one of ${MODES.join(', ')} (got ${JSON.stringify(mode)})`);
  checkOptionalBoolean(operation, 'options.force', options?.force);
  const timeoutMs = options?.timeoutMs === undefined ? 5000 : checkInteger(operation, 'options.timeoutMs', options.timeoutMs, 10, 600_000);
  const signal = options?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${operation}: options.signal must be an AbortSignal (got ${describe(signal)})`);
  }
  return { mode, force: options?.force ?? false, timeoutMs, ...(signal === undefined ? {} : { signal }) };
}

async function run(operation: string, action: 'attach' | 'detach', pid: number, options: AttachOptions | undefined): Promise<AttachResult> {
  const checked = validate(operation, pid, options);
  if (process.platform !== 'linux') throw new KsmError(operation, 'ENOTSUP', `not supported here: ptrace injection needs Linux (this is ${process.platform})`);
  if (process.arch !== 'x64' && process.arch !== 'arm64') {
    throw new KsmError(operation, 'ENOTSUP', `not supported here: the injector knows x86_64 and aarch64 (this is ${process.arch})`);
  }
  const refusal = attachRefusal(operation, pid);
  if (refusal !== undefined && !checked.force) throw new KsmError(operation, 'EREFUSED', `${refusal} (force: true attaches anyway)`);
  const command = commandOf(pid);
  const report: HelperReport = await runHelper({ action, pid, mode: checked.mode, timeoutMs: checked.timeoutMs, signal: checked.signal });
  return {
    pid,
    command,
    tid: report.tid,
    mode: report.mode,
    fellBack: report.fellBack,
    coversLaterMappings: report.mode === 'prctl',
    mappings: report.mappings,
    bytes: report.bytes,
    failedMappings: report.failedMappings,
    firstError: report.firstError,
    syscalls: report.syscalls,
    signalsPassed: report.signalsPassed,
    stoppedMicroseconds: report.stoppedMicroseconds,
  };
}

/**
 * Makes a running process's memory mergeable, without restarting it: one of its
 * threads is stopped for a moment (PTRACE_SEIZE + PTRACE_INTERRUPT) and runs
 * prctl(PR_SET_MEMORY_MERGE, 1) or, in madvise mode, madvise(MADV_MERGEABLE) over
 * each whole private anonymous mapping; then every register is put back. In
 * madvise mode mappings made later are not covered: call it again (`ksm attach
 * --watch`). Refuses this process and traced ones; without `force`, also setuid or
 * privileged processes, other users' processes, kernel threads and seccomp-filtered
 * ones (KsmError EREFUSED). Read SAME_DOMAIN_WARNING.
 */
export function attachProcess(pid: number, options?: AttachOptions): Promise<AttachResult> {
  return run('attachProcess', 'attach', pid, options);
}

/**
 * Undoes attachProcess(): prctl(PR_SET_MEMORY_MERGE, 0) when the process has the
 * flag (which unmerges and unmarks everything), else madvise(MADV_UNMERGEABLE)
 * over the mappings attach marks. Merged pages are copied back: that needs memory.
 */
export function detachProcess(pid: number, options?: AttachOptions): Promise<AttachResult> {
  return run('detachProcess', 'detach', pid, options);
}
