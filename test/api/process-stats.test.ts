import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KsmError } from '../../lib/core/errors.js';
import { processKsmStats } from '../../lib/process/process-stats.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { coverage } from '../helpers/smaps.js';
import { jsonResult, runNode, startNode } from './compiled-lib.js';

/** A Node child that holds 8 MiB of mergeable memory (and maybe prctl merging), idle until killed. */
async function startHolder(script: string) {
  const child = startNode(`${script}; const held = lib.allocMergeable(8 << 20, 7); console.log('ready'); setInterval(() => held, 1 << 30);`);
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  expect(chunk.toString()).toContain('ready');
  return child;
}

function supportedStats(...args: Parameters<typeof processKsmStats>) {
  const stats = processKsmStats(...args);
  if (!stats.supported) throw new Error(stats.reason);
  return stats;
}

describe('processKsmStats', () => {
  it('reads ksm_merging_pages and both line formats of ksm_stat, in pages and bytes', async (ctx) => {
    requireOrSkip(ctx, prctlUnavailable()); // the holder turns on prctl merging
    const child = await startHolder('lib.enableProcessMerging()');
    try {
      const stats = supportedStats(child.pid as number, { coverage: false });
      const raw = readFileSync(`/proc/${child.pid}/ksm_stat`, 'utf8');
      expect(stats).toMatchObject({
        supported: true,
        pid: child.pid,
        pageSize: 4096,
        mergingPages: Number(readFileSync(`/proc/${child.pid}/ksm_merging_pages`, 'utf8')),
        rmapItems: Number(/ksm_rmap_items (\d+)/.exec(raw)?.[1]),
        zeroPages: Number(/ksm_zero_pages (\d+)/.exec(raw)?.[1]),
        profitBytes: Number(/ksm_process_profit (-?\d+)/.exec(raw)?.[1]),
        unavailable: {},
      });
      // Debian's 6.12 writes neither line: the values are then unknown.
      expect(stats.mergeAny).toBe(raw.includes('ksm_merge_any:') ? true : undefined);
      expect(stats.mergeable).toBe(raw.includes('ksm_mergeable:') ? true : undefined);
      expect(stats.mergingBytes).toBe((stats.mergingPages ?? NaN) * 4096);
      expect(stats.zeroBytes).toBe((stats.zeroPages ?? NaN) * 4096);
      expect(stats).not.toHaveProperty('coverage');
    } finally {
      child.kill();
    }
  });

  it('reports mergeAny false for a process without prctl merging, from smaps where ksm_stat lacks the field', () => {
    expect(supportedStats().mergeAny).toBe(false);
  });

  it('reports mergeAny true for a process started with the prctl flag, on any kernel that has it', async (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    const child = spawn('python3', ['-c', 'import ctypes, sys; ctypes.CDLL(None).prctl(67, 1, 0, 0, 0); print("ready", flush=True); sys.stdin.read()'], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => child.stdout.once('data', resolve));
      expect(supportedStats(child.pid as number).mergeAny).toBe(true);
      expect(supportedStats(child.pid as number, { coverage: false }).mergeAny).toBe(readFileSync(`/proc/${child.pid}/ksm_stat`, 'utf8').includes('ksm_merge_any') ? true : undefined);
    } finally {
      child.kill();
    }
  });

  it("computes coverage as the independent smaps oracle does", async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const child = await startHolder('');
    try {
      const stats = supportedStats(child.pid as number);
      const oracle = coverage(child.pid as number);
      // The child is idle, but V8 may still touch a page or two between the two reads.
      expect(stats.coverage?.mergeableAnonBytes).toBe(oracle.mergeableKb * 1024);
      expect(stats.coverage?.mergeableAnonBytes).toBeGreaterThanOrEqual(8 << 20);
      expect(Math.abs((stats.coverage?.anonBytes ?? 0) - oracle.anonymousKb * 1024)).toBeLessThan(256 * 1024);
      expect(stats.coverage?.ratio).toBeCloseTo(oracle.ratio, 2);
    } finally {
      child.kill();
    }
  });

  it('throws a KsmError ESRCH for a process that is gone', () => {
    const gone = spawnSync('true');
    const call = () => processKsmStats(gone.pid as number);
    expect(call).toThrow(KsmError);
    expect(call).toThrow(expect.objectContaining({ code: 'ESRCH', message: expect.stringContaining(`no process ${gone.pid}`) }));
  });

  it("marks another user's process's files unavailable, with reasons, instead of failing", (ctx) => {
    requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
    const result = runNode('console.log(JSON.stringify(lib.processKsmStats(1)));', { uid: 65534, gid: 65534 });
    const stats = jsonResult<Record<string, unknown>>(result);
    expect(stats).toEqual({
      supported: true,
      pid: 1,
      pageSize: 4096,
      unavailable: {
        mergingPages: '/proc/1/ksm_merging_pages is readable only by the process\'s owner and root',
        ksmStat: '/proc/1/ksm_stat is readable only by the process\'s owner and root',
        coverage: '/proc/1/smaps is readable only by the process\'s owner and root',
      },
    });
  });

  describe('hostile input', () => {
    for (const pid of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 22 + 1]) {
      it(`refuses pid ${pid} with a RangeError`, () => {
        expect(() => processKsmStats(pid)).toThrow(RangeError);
      });
    }
    for (const pid of ['1', null, {}, 1n]) {
      it(`refuses pid ${String(pid)} with a TypeError`, () => {
        expect(() => processKsmStats(pid as never)).toThrow(/pid must be a number/);
      });
    }
    it('refuses bad options', () => {
      expect(() => processKsmStats(process.pid, { coverage: 'no' } as never)).toThrow(/options.coverage must be a boolean/);
      expect(() => processKsmStats(process.pid, { smaps: false } as never)).toThrow(/unknown option "smaps"/);
    });
  });
});
