// The one error convention of ksm-preload:
// - a wrong argument type is a TypeError, a wrong value a RangeError, each naming
//   the function and the argument (lib/core/validate.ts);
// - a failure of the system, or an operation this machine cannot do, is a KsmError
//   whose `code` is one of KsmErrorCode.
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/** The errno names Node knows (`EPERM`, `ENOENT`, ...). */
export type ErrnoCode = keyof typeof constants.errno;

/**
 * What a KsmError can say:
 * - an errno name, when a system call failed (then `syscall` names it);
 * - `ENOTSUP`: the platform, kernel or a missing native addon rules the operation out;
 * - `EREFUSED`: ksm-preload refused an operation that would be unsafe (a privileged target, say).
 */
export type KsmErrorCode = ErrnoCode | 'ENOTSUP' | 'EREFUSED';

/** Kept for code written against 0.1: the codes that are not errno names. */
export type KsmErrorExtraCode = 'ENOTSUP' | 'EREFUSED';

/** What went wrong, besides the message. */
export interface KsmErrorDetails {
  /** The system call that failed, when one did: `madvise`, `open`, `ptrace`. Never invented. */
  syscall?: string;
  /** The numeric errno, when a system call failed. */
  errno?: number;
  cause?: unknown;
}

/** The error every ksm-preload failure of the system is reported with. */
export class KsmError extends Error {
  override readonly name = 'KsmError';
  readonly code: KsmErrorCode;
  /** The operation that failed: a function or command such as `installPreloadLibrary` or `tune`. */
  readonly operation: string;
  /** The system call that failed, when a system call failed. */
  readonly syscall: string | undefined;
  readonly errno: number | undefined;

  constructor(operation: string, code: KsmErrorCode, detail: string, details: KsmErrorDetails = {}) {
    super(`${operation}: ${detail} (${code})`, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.operation = operation;
    this.syscall = details.syscall;
    this.errno = details.errno;
  }

  /** A failed system call; the native addon throws these as `KsmError.fromErrno(syscall, errno, strerror)`. */
  static fromErrno(syscall: string, errno: number, detail: string, cause?: unknown): KsmError {
    return new KsmError(syscall, errnoName(errno), detail, { syscall, errno: Math.abs(errno), cause });
  }

  /** A failed fs or child_process call, keeping Node's errno code and syscall. */
  static fromNode(operation: string, error: unknown, detail: string): KsmError {
    const err = error as NodeJS.ErrnoException;
    const code = err.code !== undefined && err.code in constants.errno ? (err.code as ErrnoCode) : 'EIO';
    return new KsmError(operation, code, detail, {
      ...(err.syscall === undefined ? {} : { syscall: err.syscall }),
      ...(err.errno === undefined ? {} : { errno: Math.abs(err.errno) }),
      cause: error,
    });
  }
}

function errnoName(errno: number): ErrnoCode {
  // libuv's table lacks some names (ENOEXEC): os.constants.errno has them all.
  const known = Object.entries(constants.errno).find(([, value]) => value === Math.abs(errno));
  if (known) return known[0] as ErrnoCode;
  try {
    const name = getSystemErrorName(-Math.abs(errno));
    if (name in constants.errno) return name as ErrnoCode;
  } catch {
    // An errno no table knows: say only that input/output failed.
  }
  return 'EIO';
}

/** A KsmError for an operation this platform, kernel or build cannot do. */
export function notSupportedError(operation: string, reason: string): KsmError {
  return new KsmError(operation, 'ENOTSUP', `not supported here: ${reason}`);
}
