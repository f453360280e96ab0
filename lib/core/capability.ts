// Whether this process can call KSM at all, and what a call does when it cannot:
// return a "not supported" result, or throw ENOTSUP when strict.
import { KsmError, notSupportedError } from './errors.js';
import { loadNative } from './addon.js';
import { checkOptionalBoolean } from './validate.js';

/** The functions native/addon/marking.cc and process.cc export. */
export interface KsmAddon {
  pageSize(): number;
  addressOf(buffer: ArrayBuffer): number;
  madvise(address: number, length: number, mergeable: boolean): void;
  allocMapping(size: number, mergeable: boolean): Buffer;
  markProcess(): { mappings: number; bytes: number; failed: number };
  getMemoryMerge(): number;
  setMemoryMerge(on: boolean): void;
  execve(path: string, argv: string[], envp: string[]): never;
}

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
export function ksmAddon(): { addon: KsmAddon; reason?: undefined } | { addon?: undefined; reason: string } {
  // The same cached object every call: markMergeable() runs this per call.
  return loadNative() as unknown as ReturnType<typeof ksmAddon>;
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
