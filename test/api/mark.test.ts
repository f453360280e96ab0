import { describe, expect, it } from 'vitest';
import { ksmAddon } from '../../lib/core/capability.js';
import { markMergeable, unmarkMergeable } from '../../lib/marking/mark.js';
import { mergeableMappedBytes, readSmaps } from '../helpers/smaps.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';

const PAGE = 4096n;

/** Whether the byte at `address` lies in a mapping flagged `mg`. */
function isMarked(address: bigint): boolean {
  const mapping = readSmaps().find((m) => m.start <= address && address < m.end);
  return mapping?.flags.includes('mg') ?? false;
}

/** Bytes of `mg` mappings inside [start, end). */
function markedBytesIn(start: bigint, end: bigint): bigint {
  return readSmaps()
    .filter((m) => m.flags.includes('mg') && m.start < end && m.end > start)
    .reduce((sum, m) => sum + (m.end < end ? m.end : end) - (m.start > start ? m.start : start), 0n);
}

/** The whole pages inside the bytes [address, address + length), computed here independently. */
function expectedPages(address: bigint, length: number): { start: bigint; end: bigint } {
  const start = ((address + PAGE - 1n) / PAGE) * PAGE;
  const end = ((address + BigInt(length)) / PAGE) * PAGE;
  return { start, end };
}

function addressOf(buffer: ArrayBuffer): bigint {
  const { addon } = ksmAddon();
  if (!addon) throw new Error('the addon is not loaded');
  return BigInt(addon.addressOf(buffer));
}

function addressRange(result: ReturnType<typeof markMergeable>): { start: bigint; end: bigint } {
  if (!result.supported || !result.range) throw new Error(`nothing advised: ${JSON.stringify(result)}`);
  return { start: BigInt(result.range.start), end: BigInt(result.range.end) };
}

describe('markMergeable', () => {
  // First in the file: no marked memory exists yet that the GC could free meanwhile.
  it('advises exactly the whole pages inside a 1 MiB Buffer, nothing around them', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    // Not pooled, not page-aligned: malloc puts a header in front of it.
    const data = Buffer.alloc(1024 * 1024, 1);
    const before = mergeableMappedBytes();
    const result = markMergeable(data);
    const after = mergeableMappedBytes();

    const { start, end } = addressRange(result);
    expect({ start, end }).toEqual(expectedPages(addressOf(data.buffer) + BigInt(data.byteOffset), data.length));
    expect(result.advisedBytes).toBe(Number(end - start));
    expect(result.advisedPages * 4096).toBe(result.advisedBytes);
    // 1 MiB at a non-aligned address contains 255 whole pages.
    expect(result.advisedPages).toBeGreaterThanOrEqual(255);
    expect(after - before).toBe(BigInt(result.advisedBytes));
    expect(isMarked(start)).toBe(true);
    expect(isMarked(end - 1n)).toBe(true);
    // The partial pages at both ends hold other memory (malloc's header, the next chunk).
    expect(isMarked(start - 1n)).toBe(false);
    expect(isMarked(end)).toBe(false);
  });

  it('advises nothing for a 100-byte pooled Buffer, and says why', () => {
    const small = Buffer.from('x'.repeat(100));
    const before = mergeableMappedBytes();
    const result = markMergeable(small);
    expect(result).toMatchObject({ supported: true, advisedBytes: 0, advisedPages: 0 });
    expect(result.reason).toMatch(/spans no whole page/);
    expect(mergeableMappedBytes()).toBe(before);
  });

  it('advises only the pages inside a view that starts and ends mid-page', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const backing = new ArrayBuffer(64 * 4096);
    const view = new Float64Array(backing, 1000 * 8, 20_000);
    const expected = expectedPages(addressOf(backing) + 8000n, view.byteLength);
    const result = markMergeable(view);
    expect(addressRange(result)).toEqual(expected);
    expect(markedBytesIn(expected.start - 2n * PAGE, expected.end + 2n * PAGE)).toBe(expected.end - expected.start);
  });

  it('accepts a DataView and a typed array, and leaves a SharedArrayBuffer alone', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const backing = new ArrayBuffer(16 * 4096);
    expect(markMergeable(new DataView(backing)).advisedPages).toBeGreaterThanOrEqual(15);
    expect(markMergeable(new Uint32Array(backing)).advisedPages).toBeGreaterThanOrEqual(15);
    const shared = markMergeable(new SharedArrayBuffer(16 * 4096));
    expect(shared).toMatchObject({ supported: true, advisedBytes: 0 });
    expect(shared.reason).toMatch(/^shared memory/);
    expect(markMergeable(new Uint8Array(new SharedArrayBuffer(16 * 4096))).reason).toMatch(/^shared memory/);
    expect(markMergeable(new ArrayBuffer(0)).reason).toBe('the data is empty');
  });

  it('unmarkMergeable clears exactly what markMergeable set', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const data = Buffer.alloc(512 * 1024, 2);
    const marked = markMergeable(data);
    const { start, end } = addressRange(marked);
    expect(markedBytesIn(start, end)).toBe(end - start);
    const unmarked = unmarkMergeable(data);
    expect(unmarked).toMatchObject({ supported: true, advisedBytes: marked.advisedBytes });
    expect(addressRange(unmarked)).toEqual({ start, end });
    expect(markedBytesIn(start - PAGE, end + PAGE)).toBe(0n);
  });

  describe('hostile input', () => {
    const notData = [undefined, null, 0, 'text', {}, [1, 2, 3], () => 1, Symbol('s'), 10n, { buffer: new ArrayBuffer(8), byteLength: 8 }];
    for (const value of notData) {
      it(`refuses ${typeof value === 'symbol' ? 'a symbol' : JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value)} with a TypeError`, () => {
        expect(() => markMergeable(value as never)).toThrow(TypeError);
        expect(() => markMergeable(value as never)).toThrow(/data must be a Buffer, a TypedArray, a DataView or an ArrayBuffer/);
      });
    }

    it('refuses a detached ArrayBuffer and views on it', () => {
      const buffer = new ArrayBuffer(8192);
      const view = new Uint8Array(buffer);
      structuredClone(buffer, { transfer: [buffer] });
      expect(() => markMergeable(buffer)).toThrow(/detached/);
      expect(() => unmarkMergeable(view)).toThrow(TypeError);
    });

    it('refuses bad options precisely', () => {
      const data = Buffer.alloc(16 * 1024);
      expect(() => markMergeable(data, { stict: true } as never)).toThrow(/unknown option "stict"/);
      expect(() => markMergeable(data, { strict: 'yes' } as never)).toThrow(/options.strict must be a boolean/);
      expect(() => markMergeable(data, null as never)).toThrow(/options must be an object/);
      expect(() => markMergeable(data, 5 as never)).toThrow(TypeError);
    });

    it('leaves the process intact: marking still works afterwards', (ctx) => {
      requireOrSkip(ctx, ksmUnavailable());
      expect(markMergeable(Buffer.alloc(256 * 1024)).advisedPages).toBeGreaterThan(60);
    });
  });
});
