// Making the whole process mergeable: prctl(PR_SET_MEMORY_MERGE) where the kernel
// has it, madvise passes over /proc/self/maps where it does not.
import type { NativeAddon } from '../core/addon.js';
import { NO_KSM_REASON, type StrictOption, type Unsupported, isMissingKsm, isStrict, ksmAddon, unsupported } from '../core/capability.js';
import { KsmError } from '../core/errors.js';
import { readMemoryMerge, writeMemoryMerge } from '../kernel/prctl.js';
import { checkInteger, checkOptions } from '../core/validate.js';

/** What enableProcessMerging() and disableProcessMerging() leave behind. */
export type ProcessMergingResult = { supported: true; merging: boolean } | (Unsupported & { merging: false });

/** What one markProcessMergeable() pass advised. */
export interface ProcessMarkResult {
  supported: true;
  /** Mappings advised MADV_MERGEABLE (whole mappings: the V8 heap, malloc arenas, anonymous mmaps). */
  mappings: number;
  /** Their size in bytes (virtual: not all of it need be resident). */
  bytes: number;
  /** Mappings that vanished or changed while the pass ran (other threads unmapping); the next pass gets them. */
  failed: number;
}

/** What markProcessMergeable() returns where KSM is out of reach. */
export type ProcessMarkUnsupported = Unsupported & { mappings: 0; bytes: 0; failed: 0 };

/**
 * Turns on merging for every present and future private anonymous mapping of
 * this process with prctl(PR_SET_MEMORY_MERGE) (Linux 6.4+). Children forked
 * afterwards inherit it; from Linux 6.7 it survives execve too.
 * On older kernels the result is `supported: false` with the reason; use
 * keepProcessMergeable() there.
 *
 * @example
 * const result = enableProcessMerging();
 * if (!result.supported) keepProcessMergeable({ intervalMs: 60_000 });
 */
export function enableProcessMerging(options?: StrictOption): ProcessMergingResult {
  return setProcessMerging('enableProcessMerging', true, options);
}

/**
 * Turns process-wide merging off again. The kernel then unmerges everything of
 * this process and clears the mergeable flag on every mapping, including
 * memory marked by markMergeable() or allocMergeable() (mark it again if you
 * still want it). Unmerging copies pages back: it needs free memory.
 *
 * @example
 * enableProcessMerging();
 * disableProcessMerging();
 */
export function disableProcessMerging(options?: StrictOption): ProcessMergingResult {
  return setProcessMerging('disableProcessMerging', false, options);
}

/**
 * Whether prctl(PR_SET_MEMORY_MERGE) is on for this process. False where the
 * kernel or platform lacks it (a KsmError `ENOTSUP` when strict).
 *
 * @example
 * console.log(isProcessMerging() ? 'merging everything' : 'opt-in only');
 */
export function isProcessMerging(options?: StrictOption): boolean {
  const operation = 'isProcessMerging';
  const strict = checkStrictOnly(operation, options);
  const load = ksmAddon();
  if (!load.addon) return (unsupported(operation, load.reason, strict), false);
  const answer = readMemoryMerge(load.addon);
  if (answer.reason !== undefined) return (unsupported(operation, answer.reason, strict), false);
  return answer.merging;
}

/**
 * One pass over /proc/self/maps advising every private anonymous mapping
 * MADV_MERGEABLE, whole mappings only (so nothing splits): the way to get a
 * process's memory merged on kernels without prctl(PR_SET_MEMORY_MERGE).
 * Memory from allocUnmergeable() is left out. Mappings created after the pass
 * are not covered; keepProcessMergeable() repeats it.
 *
 * @example
 * const { mappings, bytes } = markProcessMergeable();
 */
export function markProcessMergeable(options?: StrictOption): ProcessMarkResult | ProcessMarkUnsupported {
  const operation = 'markProcessMergeable';
  const strict = checkStrictOnly(operation, options);
  const load = ksmAddon();
  if (!load.addon) return markingUnsupported(operation, load.reason, strict);
  return markPass(operation, load.addon, strict);
}

/** Options of keepProcessMergeable(). */
export interface KeepMergeableOptions extends StrictOption {
  /** Milliseconds between passes, an integer ≥ 1. Default 30000. */
  intervalMs?: number;
}

/** The running repetition that keepProcessMergeable() returns. */
export interface KeepMergeableHandle {
  /** False where KSM is out of reach; no pass then runs. */
  readonly supported: boolean;
  /** Why not, when `supported` is false. */
  readonly reason?: string;
  /** Passes run so far (the first runs at once). */
  readonly passes: number;
  /** The latest pass's counts. */
  readonly lastPass?: ProcessMarkResult;
  /** The latest pass's error, if it failed; later passes still run. */
  readonly lastError?: KsmError;
  /** Stops the repetition. Idempotent. */
  stop(): void;
}

const DEFAULT_INTERVAL_MS = 30_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs markProcessMergeable() now and then every `intervalMs` on an unref'd
 * timer (it never keeps the process alive), so new heap and arena mappings get
 * marked too. Returns a handle; call stop() to end it.
 *
 * @example
 * const keeper = keepProcessMergeable({ intervalMs: 10_000 });
 * process.on('SIGTERM', () => keeper.stop());
 */
export function keepProcessMergeable(options?: KeepMergeableOptions): KeepMergeableHandle {
  const operation = 'keepProcessMergeable';
  checkOptions(operation, options, ['intervalMs', 'strict']);
  const intervalMs = options?.intervalMs === undefined ? DEFAULT_INTERVAL_MS : checkInteger(operation, 'options.intervalMs', options.intervalMs, 1, MAX_TIMER_MS);
  const strict = isStrict(operation, options);
  const load = ksmAddon();
  if (!load.addon) return idleKeeper(unsupported(operation, load.reason, strict).reason);
  const firstPass = markPass(operation, load.addon, strict);
  if (!firstPass.supported) return idleKeeper(firstPass.reason);
  return new ProcessKeeper(operation, load.addon, intervalMs, firstPass);
}

/** The handle where no pass can run. */
function idleKeeper(reason: string): KeepMergeableHandle {
  return { supported: false, reason, passes: 0, stop: () => undefined };
}

class ProcessKeeper implements KeepMergeableHandle {
  readonly supported = true;
  passes = 1;
  lastPass?: ProcessMarkResult;
  lastError?: KsmError;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly operation: string,
    private readonly addon: NativeAddon,
    intervalMs: number,
    firstPass: ProcessMarkResult,
  ) {
    this.lastPass = firstPass;
    this.timer = setInterval(() => this.runPass(), intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private runPass(): void {
    try {
      const pass = markPass(this.operation, this.addon, false);
      if (!pass.supported) return;
      this.lastPass = pass;
      this.lastError = undefined;
      this.passes++;
    } catch (error) {
      // An exception in a timer callback would end the process; keep the error for the caller.
      if (!(error instanceof KsmError)) throw error;
      this.lastError = error;
      this.passes++;
    }
  }
}

function markPass(operation: string, addon: NativeAddon, strict: boolean): ProcessMarkResult | ProcessMarkUnsupported {
  let counts: { mappings: number; bytes: number; failed: number };
  try {
    counts = addon.markProcess();
  } catch (error) {
    if (isMissingKsm(error)) return markingUnsupported(operation, NO_KSM_REASON, strict);
    throw error;
  }
  return { supported: true, ...counts };
}

function setProcessMerging(operation: string, on: boolean, options: StrictOption | undefined): ProcessMergingResult {
  const strict = checkStrictOnly(operation, options);
  const load = ksmAddon();
  if (!load.addon) return { ...unsupported(operation, load.reason, strict), merging: false };
  const refusal = writeMemoryMerge(load.addon, on);
  if (refusal !== undefined) return { ...unsupported(operation, refusal, strict), merging: false };
  return { supported: true, merging: on };
}

function checkStrictOnly(operation: string, options: StrictOption | undefined): boolean {
  checkOptions(operation, options, ['strict']);
  return isStrict(operation, options);
}

function markingUnsupported(operation: string, reason: string, strict: boolean): ProcessMarkUnsupported {
  return { ...unsupported(operation, reason, strict), mappings: 0, bytes: 0, failed: 0 };
}
