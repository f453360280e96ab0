import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';

const AT_PAGESZ = 6;
const THIRTY_TWO_BIT_ARCHES = ['arm', 'ia32', 'mips', 'mipsel', 'ppc'];
let cached: number | undefined;

/**
 * The kernel's page size, from the auxiliary vector (/proc/self/auxv), so that
 * reading statistics needs no native addon. 4096 where auxv is unreadable.
 */
export function systemPageSize(): number {
  cached ??= readAuxvPageSize() ?? 4096;
  return cached;
}

function readAuxvPageSize(): number | undefined {
  let auxv: Buffer;
  try {
    auxv = readFileSync('/proc/self/auxv');
  } catch {
    return undefined; // Not Linux, or /proc is not mounted.
  }
  // Pairs of native unsigned longs: type, value.
  const wordSize = THIRTY_TWO_BIT_ARCHES.includes(process.arch) ? 4 : 8;
  const readWord = (offset: number): number =>
    wordSize === 4
      ? endianness() === 'LE' ? auxv.readUInt32LE(offset) : auxv.readUInt32BE(offset)
      : Number(endianness() === 'LE' ? auxv.readBigUInt64LE(offset) : auxv.readBigUInt64BE(offset));
  for (let offset = 0; offset + 2 * wordSize <= auxv.length; offset += 2 * wordSize) {
    if (readWord(offset) === AT_PAGESZ) return readWord(offset + wordSize);
  }
  return undefined;
}
