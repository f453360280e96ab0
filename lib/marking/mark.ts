// Advising the pages of one JavaScript buffer mergeable (or not).
import { isAnyArrayBuffer, isSharedArrayBuffer } from 'node:util/types';
import type { NativeAddon } from '../core/addon.js';
import { NO_KSM_REASON, type StrictOption, type Unsupported, isMissingKsm, isStrict, ksmAddon, unsupported } from '../core/capability.js';
import { checkOptions, describe } from '../core/validate.js';

/** Anything markMergeable() accepts: a Buffer, any typed array, a DataView, or an ArrayBuffer. */
export type MergeableData = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/** Options of markMergeable() and unmarkMergeable(). */
export type MarkOptions = StrictOption;

/** What markMergeable() / unmarkMergeable() advised. */
export interface MarkResult {
  supported: true;
  /** Bytes advised: whole pages strictly inside the data, never a byte outside it. */
  advisedBytes: number;
  advisedPages: number;
  /**
   * The advised addresses [start, end), when any. Numbers, so results stay
   * JSON-friendly; exact, since user-space addresses fit in 53 bits.
   */
  range?: { start: number; end: number };
  /** Why nothing was advised, when advisedBytes is 0. */
  reason?: string;
}

/** The result where KSM is out of reach. */
export type MarkUnsupported = Unsupported & { advisedBytes: 0; advisedPages: 0 };

const OPTION_KEYS = ['strict'] as const;

/**
 * Advises the whole pages inside `data` MADV_MERGEABLE, so ksmd may merge them
 * with identical pages anywhere on the machine. Pages that `data` shares with
 * other memory (small Buffers live in shared pool slabs) are left alone, so a
 * view smaller than two pages may advise nothing; the result then says why.
 *
 * Advising part of a mapping splits it into separate kernel VMAs, and a process
 * has a limited number of them (vm.max_map_count): for large data prefer
 * allocMergeable(), whose memory is a mapping of its own and splits nothing.
 *
 * Advised means asked: the kernel silently ignores memory that is not private
 * and anonymous. Check /proc/self/smaps (the `mg` flag) or processKsmStats().
 *
 * @throws TypeError for data of another type or a detached ArrayBuffer, or bad options.
 * @throws KsmError `ENOTSUP` where KSM is out of reach and the call is strict.
 *
 * @example
 * const table = Buffer.alloc(4 * 1024 * 1024, 'same in every replica');
 * console.log(markMergeable(table).advisedBytes);
 */
export function markMergeable(data: MergeableData, options?: MarkOptions): MarkResult | MarkUnsupported {
  return advise('markMergeable', data, true, options);
}

/**
 * Advises the whole pages inside `data` MADV_UNMERGEABLE: KSM stops merging them
 * and copies merged ones back, which needs memory and can fail with `EAGAIN` or
 * `ENOMEM` (a KsmError). Same rules and result as markMergeable().
 *
 * @example
 * const table = Buffer.alloc(4 * 1024 * 1024, 1);
 * markMergeable(table);
 * unmarkMergeable(table);
 */
export function unmarkMergeable(data: MergeableData, options?: MarkOptions): MarkResult | MarkUnsupported {
  return advise('unmarkMergeable', data, false, options);
}

function advise(operation: string, data: MergeableData, mergeable: boolean, options: MarkOptions | undefined): MarkResult | MarkUnsupported {
  if (options !== undefined) checkOptions(operation, options, OPTION_KEYS);
  const strict = isStrict(operation, options);
  const byteLength = checkedByteLength(operation, data);
  const load = ksmAddon();
  if (!load.addon) return notAdvisable(operation, load.reason, strict);
  const placement = placementOf(load.addon, data);
  if (placement.shared) {
    return nothingAdvised('shared memory: a SharedArrayBuffer is shared with other threads, so it is left alone');
  }
  if (byteLength === 0) return nothingAdvised('the data is empty');
  pageSize ??= load.addon.pageSize();
  // Exact in floating point: the page size is a power of two. (% on addresses
  // beyond 32 bits would be a slow fmod call.)
  const start = Math.ceil(placement.start / pageSize) * pageSize;
  const end = Math.floor((placement.start + byteLength) / pageSize) * pageSize;
  if (end <= start) {
    return nothingAdvised(
      `the data (${byteLength} bytes) spans no whole page of ${pageSize} bytes of its own; use allocMergeable() for data that must merge`,
    );
  }
  try {
    load.addon.madvise(start, end - start, mergeable);
  } catch (error) {
    if (mergeable && isMissingKsm(error)) return notAdvisable(operation, NO_KSM_REASON, strict);
    throw error;
  }
  return { supported: true, advisedBytes: end - start, advisedPages: (end - start) / pageSize, range: { start, end } };
}

/** The size of `data` in bytes; TypeError for anything else, or for memory that was transferred away. */
function checkedByteLength(operation: string, data: unknown): number {
  if (ArrayBuffer.isView(data)) {
    let byteLength: number;
    try {
      byteLength = data.byteLength;
    } catch {
      throw detachedError(operation); // a DataView's getter throws once its buffer is detached
    }
    if (byteLength === 0) checkAttached(operation, data.buffer);
    return byteLength;
  }
  if (isAnyArrayBuffer(data)) {
    if (data.byteLength === 0) checkAttached(operation, data);
    return data.byteLength;
  }
  throw new TypeError(`${operation}: data must be a Buffer, a TypedArray, a DataView or an ArrayBuffer (got ${describe(data)})`);
}

function checkAttached(operation: string, buffer: ArrayBuffer | SharedArrayBuffer): void {
  if (isSharedArrayBuffer(buffer)) return;
  try {
    new Uint8Array(buffer);
  } catch {
    throw detachedError(operation);
  }
}

function detachedError(operation: string): TypeError {
  return new TypeError(`${operation}: the data's ArrayBuffer is detached (it was transferred away)`);
}

/** Where the bytes of a view or buffer start, and whether they are shared memory. */
interface Placement {
  start: number;
  shared: boolean;
}

let pageSize: number | undefined;
// Memory behind a view never moves, and reading .buffer/.byteOffset and asking
// the addon costs more than the lookup: markMergeable() is meant to cost
// little more than the madvise itself.
const placements = new WeakMap<object, Placement>();

function placementOf(addon: NativeAddon, data: MergeableData): Placement {
  let placement = placements.get(data);
  if (placement === undefined) {
    const isView = ArrayBuffer.isView(data);
    const buffer = isView ? data.buffer : data;
    // instanceof first: it is the cheap answer for the usual ArrayBuffer.
    const shared = !(buffer instanceof ArrayBuffer) && isSharedArrayBuffer(buffer);
    placement = { start: shared ? 0 : addon.addressOf(buffer as ArrayBuffer) + (isView ? data.byteOffset : 0), shared };
    placements.set(data, placement);
  }
  return placement;
}

function nothingAdvised(reason: string): MarkResult {
  return { supported: true, advisedBytes: 0, advisedPages: 0, reason };
}

function notAdvisable(operation: string, reason: string, strict: boolean): MarkUnsupported {
  return { ...unsupported(operation, reason, strict), advisedBytes: 0, advisedPages: 0 };
}
