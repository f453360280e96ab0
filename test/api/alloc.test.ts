import { execFileSync } from 'node:child_process';
import { constants } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { allocMergeable, allocUnmergeable } from '../../lib/marking/alloc.js';
import { ksmAddon } from '../../lib/core/capability.js';
import { markMergeable } from '../../lib/marking/mark.js';
import { disableProcessMerging, enableProcessMerging, markProcessMergeable } from '../../lib/marking/process-merging.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { readSmaps, type SmapsMapping } from '../helpers/smaps.js';
import { compiledLib, jsonResult, runNode, startNode } from './compiled-lib.js';

const PAGE = 4096;

function addressOf(buffer: Buffer): number {
  const { addon } = ksmAddon();
  if (!addon) throw new Error('the addon is not loaded');
  return addon.addressOf(buffer.buffer as ArrayBuffer) + buffer.byteOffset;
}

/** The smaps mapping that holds `buffer`'s first byte. */
function mappingOf(buffer: Buffer): SmapsMapping {
  const address = BigInt(addressOf(buffer));
  const mapping = readSmaps().find((m) => m.start <= address && address < m.end);
  if (!mapping) throw new Error(`no mapping holds 0x${address.toString(16)}`);
  return mapping;
}

describe('allocMergeable', () => {
  it('returns a zeroed Buffer of the size asked over its own page-aligned, advised mapping', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const size = 3 * PAGE + 100;
    const buffer = allocMergeable(size);
    expect(buffer).toBeInstanceOf(Buffer);
    expect(buffer.length).toBe(size);
    expect(buffer.byteOffset).toBe(0);
    expect(buffer.every((byte) => byte === 0)).toBe(true);
    expect(addressOf(buffer) % PAGE).toBe(0);
    const mapping = mappingOf(buffer);
    expect(mapping.flags).toContain('mg');
    expect(mapping.start).toBe(BigInt(addressOf(buffer)));
    // The whole last page belongs to the buffer: marking it again covers all four pages.
    expect(markMergeable(buffer).advisedPages).toBe(3);
  });

  it('fills like Buffer.alloc: a byte, a string in an encoding, bytes', () => {
    expect(allocMergeable(5, 0xab)).toEqual(Buffer.alloc(5, 0xab));
    expect(allocMergeable(7, 'abc')).toEqual(Buffer.alloc(7, 'abc'));
    expect(allocMergeable(6, '6869', { encoding: 'hex' })).toEqual(Buffer.from('686968696869', 'hex'));
    expect(allocMergeable(5, Uint8Array.of(1, 2))).toEqual(Buffer.from([1, 2, 1, 2, 1]));
    expect(allocMergeable(0)).toEqual(Buffer.alloc(0));
  });

  describe('hostile input', () => {
    const sizes: Array<[unknown, ErrorConstructor, RegExp]> = [
      [-1, RangeError, /size must be between 0 and/],
      [1.5, RangeError, /size must be an integer/],
      [Number.NaN, RangeError, /size must be an integer/],
      [constants.MAX_LENGTH + 1, RangeError, /size must be between 0 and/],
      ['10', TypeError, /size must be a number/],
      [undefined, TypeError, /size must be a number/],
      [10n, TypeError, /size must be a number/],
    ];
    for (const [size, type, message] of sizes) {
      it(`refuses size ${String(size)}`, () => {
        for (const alloc of [allocMergeable, allocUnmergeable]) {
          expect(() => alloc(size as number)).toThrow(type);
          expect(() => alloc(size as number)).toThrow(message);
        }
      });
    }
    const fills: Array<[unknown, ErrorConstructor, RegExp]> = [
      [256, RangeError, /fill must be between 0 and 255/],
      [-1, RangeError, /fill must be between 0 and 255/],
      [0.5, RangeError, /fill must be an integer/],
      [{}, TypeError, /fill must be a byte value, a string or a Uint8Array/],
      [[1, 2], TypeError, /fill must be a byte value/],
      [new Uint8Array(0), RangeError, /fill must not be an empty Uint8Array/],
    ];
    for (const [fill, type, message] of fills) {
      it(`refuses fill ${JSON.stringify(fill)}`, () => {
        expect(() => allocMergeable(8, fill as number)).toThrow(type);
        expect(() => allocUnmergeable(8, fill as number)).toThrow(message);
      });
    }
    it('refuses bad options', () => {
      expect(() => allocMergeable(8, 'a', { encoding: 'klingon' as never })).toThrow(/options.encoding must be a Buffer encoding/);
      expect(() => allocMergeable(8, 'a', { encoding: 8 as never })).toThrow(TypeError);
      expect(() => allocMergeable(8, 0, { fill: 1 } as never)).toThrow(/unknown option "fill"/);
      expect(() => allocUnmergeable(8, 0, { strict: 'true' } as never)).toThrow(/options.strict must be a boolean/);
    });
    it('leaves the process intact', () => {
      expect(allocMergeable(PAGE, 1).length).toBe(PAGE);
    });
  });

  it('survives garbage collection in a loop (also of marked Buffers), and gives the memory back', () => {
    const result = runNode(`
      const { readFileSync } = require('node:fs');
      const rssMb = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      const mappings = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').length;
      (async () => {
        let checksum = 0;
        for (let i = 0; i < 1500; i++) {
          const mergeable = lib.allocMergeable((1 << 20) + i, i & 255);
          const secret = lib.allocUnmergeable(100 + i, 7);
          const marked = Buffer.alloc(256 * 1024, i & 255);
          lib.markMergeable(marked);
          lib.unmarkMergeable(marked.subarray(5000, 100000));
          checksum += mergeable[mergeable.length - 1] + secret[99] + marked[1000];
          if (i % 100 === 0) {
            gc();
            await new Promise(setImmediate);
          }
        }
        gc();
        await new Promise(setImmediate);
        gc();
        await new Promise(setImmediate);
        console.log(JSON.stringify({ checksum, rssMb: rssMb(), mappings: mappings() }));
      })();
    `);
    const out = jsonResult<{ checksum: number; rssMb: number; mappings: number }>(result);
    let expected = 0;
    for (let i = 0; i < 1500; i++) expected += 2 * (i & 255) + 7;
    expect(out.checksum).toBe(expected);
    // 1500 MiB went through; a leak would keep it all.
    expect(out.rssMb).toBeLessThan(300);
    expect(out.mappings).toBeLessThan(1000);
  });

  // withKsmd may first wait for the machine-wide lock (up to 10 minutes) while another suite holds it.
  it('identical content in two processes merges', { timeout: 11 * 60_000 }, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    // Every page differs from every other page of the same process, so only
    // merging across the two processes can count.
    const script = `
      const size = 16 << 20;
      const shared = lib.allocMergeable(size);
      for (let offset = 0; offset < size; offset += 4096) shared.fill(String(offset) + ' same in both ', offset, offset + 4096);
      console.log('ready');
      setInterval(() => shared, 1 << 30);
    `;
    const children = [startNode(script), startNode(script)];
    try {
      await Promise.all(children.map((child) => new Promise((resolve) => child.stdout.once('data', resolve))));
      const merging = (pid: number) => Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8'));
      const pids = children.map((child) => child.pid as number);
      const before = pids.map(merging);
      await withKsmd(async () => {
        const merged = await waitFor(() => pids.every((pid, i) => merging(pid) >= (before[i] ?? 0) + 4000), 60_000, 200);
        expect(merged, `ksm_merging_pages: ${pids.map(merging).join(', ')}`).toBe(true);
      });
    } finally {
      for (const child of children) child.kill();
    }
  });
});

describe('allocUnmergeable', () => {
  afterEach(() => {
    if (!prctlUnavailable()) disableProcessMerging();
  });

  it('stays out of KSM even with prctl merging on and after a whole-process pass', (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    enableProcessMerging();
    const control = Buffer.alloc(1 << 20, 1);
    const secret = allocUnmergeable(1 << 20, 1);
    expect(secret.length).toBe(1 << 20);
    expect(mappingOf(control).flags).toContain('mg'); // the test can tell
    const flags = () => mappingOf(secret).flags;
    expect(flags()).not.toContain('mg');
    expect(flags()).toContain('dd'); // MADV_DONTDUMP: not in core dumps
    expect(flags()).toContain('nr'); // MAP_NORESERVE: never joined to a neighbour
    markProcessMergeable();
    expect(flags()).not.toContain('mg');
    disableProcessMerging();
    markProcessMergeable();
    expect(flags()).not.toContain('mg');
    expect(mappingOf(control).flags).toContain('mg');
  });

  it("is left out of a pass run by another thread: the exclusions are process-wide", (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const alloc = JSON.stringify(join(compiledLib(), 'marking', 'alloc.js'));
    const mark = JSON.stringify(join(compiledLib(), 'marking', 'mark.js'));
    const result = runNode(`
      const { Worker } = require('node:worker_threads');
      const { readFileSync } = require('node:fs');
      const worker = new Worker(\`
        const { parentPort } = require('node:worker_threads');
        const secrets = Array.from({ length: 20 }, () => require(${alloc}).allocUnmergeable(64 * 1024, 1));
        parentPort.postMessage(secrets.map((secret) => require(${mark}).unmarkMergeable(secret).range));
        parentPort.once('message', () => process.exit(0));
      \`, { eval: true });
      worker.once('message', (ranges) => {
        const pass = lib.markProcessMergeable();
        const smaps = readFileSync('/proc/self/smaps', 'utf8').split('\\n');
        const marked = [];
        let start = 0, end = 0;
        for (const line of smaps) {
          const header = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
          if (header) [start, end] = [parseInt(header[1], 16), parseInt(header[2], 16)];
          else if (line.startsWith('VmFlags:') && line.includes(' mg')) marked.push([start, end]);
        }
        const leaked = ranges.filter((r) => marked.some(([s, e]) => s < r.end && e > r.start));
        console.log(JSON.stringify({ secrets: ranges.length, leaked: leaked.length, mappings: pass.mappings }));
        worker.postMessage('done');
      });
    `);
    expect(jsonResult(result)).toEqual({ secrets: 20, leaked: 0, mappings: expect.any(Number) });
  });

  it("calls the preload library's exclude/include entry points when they exist", () => {
    const hooks = join(compiledLib(), 'fake-preload-hooks.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', hooks, join(__dirname, 'fixtures', 'fake-preload-hooks.c')]);
    const result = runNode(
      `
      (async () => {
        let secret = lib.allocUnmergeable(10000);
        const address = lib.unmarkMergeable(secret).range.start;
        const merged = lib.allocMergeable(10000);
        console.error('address ' + address);
        secret = null;
        gc();
        await new Promise(setImmediate);
        console.log(merged.length);
      })();
    `,
      { env: { LD_PRELOAD: hooks } },
    );
    expect(result.status).toBe(0);
    const address = /^address (\d+)$/m.exec(result.stderr)?.[1];
    expect(address).toBeDefined();
    expect(result.stderr.split('\n').filter((line) => /^(exclude|include) /.test(line))).toEqual([
      `exclude ${address} 12288`,
      `include ${address} 12288`,
    ]);
  });
});
