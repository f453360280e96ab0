import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  disableProcessMerging,
  enableProcessMerging,
  isProcessMerging,
  keepProcessMergeable,
} from '../../lib/marking/process-merging.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { mergesWholeProcess } from '../helpers/smaps.js';
import { jsonResult, runNode } from './compiled-lib.js';

/** A child spawned now: it inherits whatever prctl flag this process has at fork. */
async function withChild<T>(fn: (child: ChildProcess) => T): Promise<T> {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  try {
    return fn(child);
  } finally {
    child.kill();
  }
}

describe('enableProcessMerging / disableProcessMerging / isProcessMerging', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    if (!prctlUnavailable()) disableProcessMerging();
  });

  it('turns prctl merging on for this process and children spawned afterwards, and off again', async (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    expect(mergesWholeProcess('self')).toBe(false);
    expect(isProcessMerging()).toBe(false);

    expect(enableProcessMerging()).toEqual({ supported: true, merging: true });
    expect(isProcessMerging()).toBe(true);
    expect(mergesWholeProcess('self')).toBe(true);
    await withChild((child) => expect(mergesWholeProcess(child.pid as number)).toBe(true));

    expect(disableProcessMerging()).toEqual({ supported: true, merging: false });
    expect(isProcessMerging()).toBe(false);
    expect(mergesWholeProcess('self')).toBe(false);
    await withChild((child) => expect(mergesWholeProcess(child.pid as number)).toBe(false));
  });

  it('under KSM_PRELOAD_TEST_NO_PRCTL=1 reports a refusing kernel and never calls prctl', (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    vi.stubEnv('KSM_PRELOAD_TEST_NO_PRCTL', '1');
    const result = enableProcessMerging();
    expect(result).toEqual({ supported: false, merging: false, reason: expect.stringContaining('KSM_PRELOAD_TEST_NO_PRCTL=1') });
    expect(mergesWholeProcess('self')).toBe(false);
    expect(isProcessMerging()).toBe(false);
    expect(() => enableProcessMerging({ strict: true })).toThrow(expect.objectContaining({ name: 'KsmError', code: 'ENOTSUP' }));
    expect(() => isProcessMerging({ strict: true })).toThrow(/ENOTSUP/);
    expect(mergesWholeProcess('self')).toBe(false);
  });

  it('refuses bad options', () => {
    expect(() => enableProcessMerging({ strict: 1 } as never)).toThrow(/options.strict must be a boolean/);
    expect(() => disableProcessMerging({ unmerge: true } as never)).toThrow(/unknown option "unmerge"/);
    expect(() => isProcessMerging([] as never)).toThrow(/options must be an object/);
  });
});

describe('markProcessMergeable', () => {
  it('advises almost all anonymous memory of a process with whole-mapping madvise, no prctl', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const result = runNode(`
      const held = [];
      for (let i = 0; i < 50_000; i++) held.push({ i, text: 'object ' + i });
      const big = Buffer.alloc(16 << 20, 3);
      const coverage = () => lib.processKsmStats(process.pid).coverage;
      const before = coverage();
      const pass = lib.markProcessMergeable();
      const after = coverage();
      const mergeAny = lib.processKsmStats(process.pid, { coverage: false }).mergeAny;
      console.log(JSON.stringify({ before, pass, after, mergeAny, held: held.length, big: big.length }));
    `);
    const { before, pass, after, mergeAny } = jsonResult<{
      before: { ratio: number };
      after: { ratio: number; mergeableAnonBytes: number };
      pass: { supported: boolean; mappings: number; bytes: number; failed: number };
      mergeAny: boolean;
    }>(result);
    expect(before.ratio).toBeLessThan(0.05);
    expect(pass.supported).toBe(true);
    expect(pass.mappings).toBeGreaterThan(10);
    expect(pass.bytes).toBeGreaterThanOrEqual(16 << 20);
    expect(after.ratio).toBeGreaterThan(0.95);
    // Unknown (undefined) where ksm_stat has no ksm_merge_any line, as on 6.1.
    expect(mergeAny).toBe(readFileSync('/proc/self/ksm_stat', 'utf8').includes('ksm_merge_any') ? false : undefined);
  });
});

describe('keepProcessMergeable', () => {
  it('marks mappings created after the first pass, and stop() ends the passes', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const result = runNode(`
      const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
      const mergeable = () => lib.processKsmStats(process.pid).coverage.mergeableAnonBytes;
      (async () => {
        const keeper = lib.keepProcessMergeable({ intervalMs: 40 });
        const firstPasses = keeper.passes;
        const late = Buffer.alloc(32 << 20, 5);
        const beforeNextPass = mergeable();
        await sleep(400);
        const afterPasses = mergeable();
        keeper.stop();
        const passesAtStop = keeper.passes;
        await sleep(200);
        console.log(JSON.stringify({ firstPasses, beforeNextPass, afterPasses, passesAtStop, passesLater: keeper.passes, lastPass: keeper.lastPass, late: late.length }));
      })();
    `);
    const out = jsonResult<{ firstPasses: number; beforeNextPass: number; afterPasses: number; passesAtStop: number; passesLater: number; lastPass: { mappings: number } }>(result);
    expect(out.firstPasses).toBe(1);
    expect(out.afterPasses - out.beforeNextPass).toBeGreaterThanOrEqual(32 << 20);
    expect(out.passesAtStop).toBeGreaterThanOrEqual(3);
    expect(out.passesLater).toBe(out.passesAtStop);
    expect(out.lastPass.mappings).toBeGreaterThan(10);
  });

  it('never keeps the process alive', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const result = runNode(`lib.keepProcessMergeable({ intervalMs: 60_000 }); console.log('done');`, { timeoutMs: 10_000 });
    expect(result.signal).toBeNull();
    expect(result.stdout.trim()).toBe('done');
  });

  it('refuses bad intervals and options', () => {
    for (const intervalMs of [0, -5, 1.5, 2 ** 31, Number.NaN]) {
      expect(() => keepProcessMergeable({ intervalMs }), String(intervalMs)).toThrow(RangeError);
    }
    expect(() => keepProcessMergeable({ intervalMs: '100' } as never)).toThrow(/options.intervalMs must be a number/);
    expect(() => keepProcessMergeable({ interval: 100 } as never)).toThrow(/unknown option "interval"/);
  });
});
