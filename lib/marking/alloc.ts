// Buffers over page-aligned mappings of their own: mergeable for shared data,
// unmergeable for secrets.
import { constants } from 'node:buffer';
import type { NativeAddon } from '../core/addon.js';
import { type StrictOption, isMissingKsm, isStrict, ksmAddon, NO_KSM_REASON, unsupported } from '../core/capability.js';
import { notSupportedError } from '../core/errors.js';
import { checkInteger, checkOptions, describe } from '../core/validate.js';

/** What a new buffer is filled with, as in Buffer.alloc(): a byte value, a string, or bytes to repeat. */
export type AllocFill = number | string | Uint8Array;

/** Options of allocMergeable() and allocUnmergeable(). */
export interface AllocOptions extends StrictOption {
  /** The encoding of a string `fill`. Default 'utf8'. */
  encoding?: BufferEncoding;
}

const OPTION_KEYS = ['encoding', 'strict'] as const;

/**
 * A Buffer of `size` bytes over a private anonymous mapping of its own, page
 * aligned and advised MADV_MERGEABLE. Identical content in different processes
 * then lines up page for page, so ksmd merges it. The mapping (size rounded up
 * to whole pages) is unmapped when the Buffer is garbage-collected; never keep
 * a pointer into it past the Buffer's life.
 *
 * Where KSM is out of reach it returns an ordinary Buffer.alloc(size, fill)
 * (ksmSupport() says why), or throws a KsmError `ENOTSUP` when strict.
 *
 * @throws TypeError/RangeError for a bad size, fill or options; KsmError `ENOMEM` when mmap fails.
 *
 * @example
 * const model = allocMergeable(64 * 1024 * 1024);
 * readFileSync('model.bin').copy(model);
 */
export function allocMergeable(size: number, fill?: AllocFill, options?: AllocOptions): Buffer {
  const operation = 'allocMergeable';
  const strict = checkArguments(operation, size, fill, options);
  const load = ksmAddon();
  if (!load.addon) return ordinaryBuffer(operation, load.reason, strict, size, fill, options);
  return mappedOrOrdinary(operation, load.addon, true, size, fill, options, strict);
}

/**
 * A Buffer for secrets (keys, tokens): its own private anonymous mapping,
 * advised MADV_UNMERGEABLE (which holds even when the process merges everything
 * through prctl), MADV_DONTDUMP (left out of core dumps) and excluded from
 * markProcessMergeable() and from the preload library's marking. Unmapped when
 * garbage-collected.
 *
 * Memory KSM merges can be probed by other processes through timing, so a
 * secret must never sit in mergeable memory. Therefore there is no silent
 * fallback on Linux: without the native addon this throws a KsmError `ENOTSUP`
 * even when not strict. Where KSM does not exist at all (other platforms, a
 * kernel without CONFIG_KSM) it returns Buffer.alloc(), or throws ENOTSUP when strict.
 *
 * @example
 * const key = allocUnmergeable(32);
 * randomFillSync(key);
 */
export function allocUnmergeable(size: number, fill?: AllocFill, options?: AllocOptions): Buffer {
  const operation = 'allocUnmergeable';
  const strict = checkArguments(operation, size, fill, options);
  const load = ksmAddon();
  if (!load.addon) {
    if (process.platform === 'linux') throw notSupportedError(operation, `${load.reason}; without it the memory could be merged`);
    return ordinaryBuffer(operation, load.reason, strict, size, fill, options);
  }
  return mappedOrOrdinary(operation, load.addon, false, size, fill, options, strict);
}

/** Validates the arguments; returns whether the call is strict. */
function checkArguments(operation: string, size: unknown, fill: unknown, options: AllocOptions | undefined): boolean {
  checkInteger(operation, 'size', size, 0, constants.MAX_LENGTH);
  checkFill(operation, fill);
  checkOptions(operation, options, OPTION_KEYS);
  const encoding = options?.encoding;
  if (encoding !== undefined && (typeof encoding !== 'string' || !Buffer.isEncoding(encoding))) {
    throw new TypeError(`${operation}: options.encoding must be a Buffer encoding such as 'utf8' (got ${describe(encoding)})`);
  }
  return isStrict(operation, options);
}

function checkFill(operation: string, fill: unknown): void {
  if (fill === undefined || typeof fill === 'string') return;
  if (typeof fill === 'number') {
    checkInteger(operation, 'fill', fill, 0, 255);
    return;
  }
  if (!(fill instanceof Uint8Array)) {
    throw new TypeError(`${operation}: fill must be a byte value, a string or a Uint8Array (got ${describe(fill)})`);
  }
  if (fill.byteLength === 0) throw new RangeError(`${operation}: fill must not be an empty Uint8Array`);
}

/** An ordinary Buffer.alloc() where no mapping of its own can be had; ENOTSUP when strict. */
function ordinaryBuffer(operation: string, reason: string, strict: boolean, size: number, fill: AllocFill | undefined, options: AllocOptions | undefined): Buffer {
  unsupported(operation, reason, strict);
  return Buffer.alloc(size, fill, options?.encoding);
}

/**
 * A filled Buffer over a mapping of its own. On a kernel without KSM (madvise
 * refused with EINVAL) nothing can merge either way: an ordinary Buffer, or
 * ENOTSUP when strict.
 */
function mappedOrOrdinary(
  operation: string,
  addon: NativeAddon,
  mergeable: boolean,
  size: number,
  fill: AllocFill | undefined,
  options: AllocOptions | undefined,
  strict: boolean,
): Buffer {
  if (size === 0) return Buffer.alloc(0);
  let buffer: Buffer;
  try {
    buffer = addon.allocMapping(size, mergeable);
  } catch (error) {
    if (!isMissingKsm(error)) throw error;
    return ordinaryBuffer(operation, NO_KSM_REASON, strict, size, fill, options);
  }
  // Fresh mappings are zero-filled already.
  if (fill !== undefined && fill !== 0) buffer.fill(fill, 0, buffer.length, options?.encoding);
  return buffer;
}
