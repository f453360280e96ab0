// The goal of `ksm attach`: four identical redis-servers, started without the
// library, merge at least 95 % of their ideal once attached, in both modes, with
// their data unchanged; and a busy server survives 1,000 attach/detach cycles
// without losing a request.
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeMemory } from '../../lib/analysis/analyze.js';
import { attachProcess, detachProcess } from '../../lib/attach/attach.js';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { toolMissing } from '../helpers/tools.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { WITH_KSMD } from '../cli/harness.js';
import { mergingPages, settleMerging } from './merging.js';
import { fillRedis, redisDigest, RespClient, seededValue, startRedis } from './redis.js';
import { attachUnavailable, removeFixture, stop, type Started } from './targets.js';

afterAll(removeFixture);

const COPIES = 4;
const KEYS = 2000;
const VALUE_BYTES = 8192;

function unavailable(mode: 'prctl' | 'madvise'): string | undefined {
  return attachUnavailable() ?? toolMissing('redis-server') ?? toolMissing('redis-cli') ?? (mode === 'prctl' ? prctlUnavailable() : ksmUnavailable());
}

describe.each(['prctl', 'madvise'] as const)('four identical redis-servers attached with %s', (mode) => {
  it(
    'merge at least 95 % of their ideal saving, and DEBUG DIGEST is unchanged through attach, merge and detach',
    async (ctx) => {
      requireOrSkip(ctx, unavailable(mode));
      const servers: Array<Started & { port: number }> = [];
      try {
        for (let i = 0; i < COPIES; i++) servers.push(await startRedis());
        await Promise.all(servers.map((server) => fillRedis(server.port, KEYS, VALUE_BYTES)));
        const pids = servers.map((server) => server.pid);
        const digests = servers.map((server) => redisDigest(server.port));
        expect(new Set(digests).size).toBe(1);
        expect(pids.map(mergingPages)).toEqual([0, 0, 0, 0]);

        await withKsmd(async () => {
          const before = await analyzeMemory(pids);
          for (const pid of pids) {
            const result = await attachProcess(pid, { mode });
            expect(result.mode).toBe(mode);
            if (mode === 'madvise') expect(result.mappings).toBeGreaterThan(0);
          }
          const settleStarted = Date.now();
          await settleMerging(pids);
          const settleSeconds = (Date.now() - settleStarted) / 1000;
          const after = await analyzeMemory(pids);
          const merged = after.mergedBytes ?? 0;
          ctx.annotate(`${mode}: ideal ${(before.ideal.bytes / 2 ** 20).toFixed(1)} MiB, merged ${(merged / 2 ** 20).toFixed(1)} MiB (${((100 * merged) / before.ideal.bytes).toFixed(1)} %) after ${settleSeconds.toFixed(1)} s`);
          expect(before.ideal.bytes).toBeGreaterThan((COPIES - 1) * KEYS * VALUE_BYTES * 0.9);
          expect(merged / before.ideal.bytes).toBeGreaterThanOrEqual(0.95);
          for (const pid of pids) expect(mergingPages(pid)).toBeGreaterThan(0);
          expect(servers.map((server) => redisDigest(server.port))).toEqual(digests);

          for (const pid of pids) await detachProcess(pid);
          // Unmerging is at once; the counter drops when ksmd next visits the process.
          await waitFor(() => pids.every((pid) => mergingPages(pid) === 0), 30_000);
          expect(pids.map(mergingPages)).toEqual([0, 0, 0, 0]);
          expect(servers.map((server) => redisDigest(server.port))).toEqual(digests);
        });
      } finally {
        await stop(...servers);
      }
    },
    WITH_KSMD.timeout,
  );
});

describe('a busy redis-server', () => {
  it('answers every request correctly through 1,000 attach/detach cycles', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable() ?? toolMissing('redis-server'));
    const server = await startRedis();
    const client = await RespClient.open(server.port);
    let running = true;
    let sent = 0;
    let wrong = 0;
    const latest = new Map<string, Buffer>();
    // A bounded load: 4 requests in flight, each GET checked against its SET.
    const worker = async (lane: number): Promise<void> => {
      for (let i = 0; running; i++) {
        const key = `load:${lane}:${i % 500}`;
        const value = seededValue(lane * 1_000_000 + i, 256);
        sent += 2;
        const set = await client.send('SET', key, value);
        const got = await client.send('GET', key);
        if (set !== 'OK' || !(got instanceof Buffer) || !got.equals(value)) wrong++;
        latest.set(key, value);
      }
    };
    const lanes = Array.from({ length: 4 }, (_, lane) => worker(lane));
    try {
      let signals = 0;
      for (let i = 0; i < 1000; i++) {
        const mode = i % 2 === 0 ? 'prctl' : 'madvise';
        signals += (await attachProcess(server.pid, { mode })).signalsPassed;
        signals += (await detachProcess(server.pid, { mode })).signalsPassed;
      }
      running = false;
      await Promise.all(lanes);
      ctx.annotate(`${sent} requests during the cycles, ${signals} signals passed on`);
      expect(wrong).toBe(0);
      expect(sent).toBeGreaterThan(2000);
      expect(server.child.exitCode).toBeNull();
      expect(await client.send('PING')).toBe('PONG');
      // Every key holds the last value written to it, and there is nothing else.
      expect(await client.send('DBSIZE')).toBe(latest.size);
      for (const [key, value] of latest) expect((await client.send('GET', key)) as Buffer).toEqual(value);
    } finally {
      running = false;
      client.close();
      await stop(server);
    }
  }, 180_000);
});
