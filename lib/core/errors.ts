import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/** Error codes that are not errno names. */
export type KsmErrorExtraCode = 'ENOTSUP' | 'EREFUSED' | 'EBADVALUE';

/**
 * The error every ksm-preload failure is reported with. `code` is the errno name
 * (`EPERM`, `EINVAL`, ...) of the failed system call, or `ENOTSUP` where the
 * platform, kernel or a missing native addon rules the operation out.
 */
export class KsmError extends Error {
  override readonly name = 'KsmError';
  /** errno name such as `EPERM`, or `ENOTSUP` when the feature is unavailable. */
  readonly code: string;
  /** The system call or operation that failed, such as `madvise`. */
  readonly syscall: string;
  /** The numeric errno, when a system call failed. */
  readonly errno: number | undefined;

  /** Called by the native addon as `new KsmError(syscall, errno, strerror)`. */
  constructor(syscall: string, errnoOrCode: number | string, detail: string, options?: { cause?: unknown }) {
    const code = typeof errnoOrCode === 'number' ? errnoName(errnoOrCode) : errnoOrCode;
    super(`${syscall}: ${detail} (${code})`, options);
    this.code = code;
    this.syscall = syscall;
    this.errno = typeof errnoOrCode === 'number' ? errnoOrCode : undefined;
  }
}

function errnoName(errno: number): string {
  // libuv's table lacks some names (ENOEXEC): os.constants.errno has them all.
  const known = Object.entries(constants.errno).find(([, value]) => value === Math.abs(errno));
  if (known) return known[0];
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `E${errno}`;
  }
}

/** A KsmError for an operation this platform, kernel or build cannot do. */
export function notSupportedError(operation: string, reason: string): KsmError {
  return new KsmError(operation, 'ENOTSUP', `not supported here: ${reason}`);
}
