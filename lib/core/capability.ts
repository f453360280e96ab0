// Whether this process can call KSM at all, and what a call does when it cannot:
// return a "not supported" result, or throw ENOTSUP when strict.
import { KsmError, notSupportedError } from './errors.js';
import { loadNative, type NativeLoad } from './addon.js';
import { checkOptionalBoolean } from './validate.js';

/** What a function returns instead of its result where KSM is out of reach. */
export interface Unsupported {
  supported: false;
  /** Why, in words a person can act on. */
  reason: string;
}

/** The option every KSM function takes. */
export interface StrictOption {
  /** Throw a KsmError with code ENOTSUP instead of returning `supported: false`. Default: the setStrict() setting. */
  strict?: boolean;
}

let strictByDefault = false;

/**
 * Makes every function throw a KsmError with code `ENOTSUP` where KSM is out of
 * reach, instead of returning a result with `supported: false`. A call's own
 * `{ strict }` option wins over this setting.
 */
export function setStrict(strict: boolean): void {
  if (typeof strict !== 'boolean') throw new TypeError(`setStrict: strict must be a boolean (got ${typeof strict})`);
  strictByDefault = strict;
}

/** Validates the strict option and resolves it against the process-wide setting. */
export function isStrict(operation: string, options: StrictOption | undefined): boolean {
  const strict = options?.strict;
  checkOptionalBoolean(operation, 'options.strict', strict);
  return strict ?? strictByDefault;
}

/** The addon, or why it is not there. */
export function ksmAddon(): NativeLoad {
  // The same cached object every call: markMergeable() runs this per call.
  return loadNative();
}

/** The "not supported" result, or the ENOTSUP error when strict. */
export function unsupported(operation: string, reason: string, strict: boolean): Unsupported {
  if (strict) throw notSupportedError(operation, reason);
  return { supported: false, reason };
}

/** madvise(MADV_MERGEABLE) fails with EINVAL only on a kernel built without KSM. */
export function isMissingKsm(error: unknown): boolean {
  return error instanceof KsmError && error.code === 'EINVAL';
}

export const NO_KSM_REASON = 'the kernel was built without KSM (CONFIG_KSM): madvise(MADV_MERGEABLE) is refused with EINVAL';
