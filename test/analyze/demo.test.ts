import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoCommand } from '../../lib/cli/commands/demo.js';
import { runDemo, type DemoResult } from '../../lib/analysis/demo.js';
import { applyKnobs } from '../../lib/kernel/tune.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { withKsmd } from '../helpers/ksmd.js';
import { bufferContext } from './cli-context.js';

const KSM = '/sys/kernel/mm/ksm';
const NOBODY = 65534;
const builtDemo = join(__dirname, '..', '..', 'dist', 'cjs', 'analysis', 'demo.js');
/** Room for the machine-wide KSM lock (another test may hold it) and for the demo's own timeout. */
const DEMO_TEST_TIMEOUT_MS = 180_000;

/** Every writable KSM file and its text, read independently of lib/tune.ts. */
function knobFiles(): Record<string, string> {
  const knobs: Record<string, string> = {};
  for (const name of readdirSync(KSM)) {
    if (statSync(join(KSM, name)).mode & 0o200) knobs[name] = readFileSync(join(KSM, name), 'utf8');
  }
  return knobs;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The demo as a first-time user meets it: ksmd stopped. The helper holds the lock and restores all afterwards. */
function withKsmdStopped<T>(fn: () => Promise<T>): Promise<T> {
  return withKsmd(async () => {
    applyKnobs({ run: 0 });
    return fn();
  });
}

describe('ksm demo', () => {
  it('--json merges the workers, reports the saving against the ideal, restores every knob and kills the workers', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmdStopped(async () => {
      const before = knobFiles();
      const context = bufferContext();
      expect(await demoCommand.run(['--json', '--workers', '3', '--size', '8', '--timeout', '30'], context)).toBe(0);
      const result = JSON.parse(context.out()) as DemoResult;
      expect(result).toMatchObject({ mode: 'auto', workers: 3, merging: { possible: true } });
      expect(result.idealBytes).toBeGreaterThan(2 * 4 * 2 ** 20); // most of 8 MiB of Buffers, twice over
      expect(result.savedBytes).toBeGreaterThan(0);
      expect(typeof result.profitBytes).toBe('number');
      expect(result.seconds).toBeGreaterThan(0);
      expect(result.perWorker).toHaveLength(3);
      expect(result.perWorker.every((w) => (w.mergingBytes ?? 0) > 0 && (w.coverage ?? 0) > 0.9)).toBe(true);
      expect(knobFiles()).toEqual(before);
      expect(result.perWorker.filter((w) => isRunning(w.pid))).toEqual([]);
    });
  }, DEMO_TEST_TIMEOUT_MS);

  it('stops early on abort (Ctrl-C) and still restores every knob and kills the workers', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmdStopped(async () => {
      const before = knobFiles();
      const controller = new AbortController();
      let samples = 0;
      const result = await runDemo({
        workers: 2,
        workerMiB: 4,
        signal: controller.signal,
        onSample: () => {
          if (++samples === 1) controller.abort();
        },
      });
      expect(samples).toBe(2); // the one that saw the abort ends the demo
      expect(knobFiles()).toEqual(before);
      expect(result.perWorker.filter((w) => isRunning(w.pid))).toEqual([]);
    });
  }, DEMO_TEST_TIMEOUT_MS);

  it('without root and with ksmd stopped, predicts the saving and says what is needed', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    requireOrSkip(ctx, existsSync(builtDemo) ? undefined : `${builtDemo} is missing: run npm run build`);
    await withKsmdStopped(async () => {
      const before = knobFiles();
      const script = `require(${JSON.stringify(builtDemo)}).runDemo({ workers: 2, workerMiB: 4 }).then((r) => process.stdout.write(JSON.stringify(r)))`;
      const output = execFileSync(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 60_000 });
      const result = JSON.parse(output) as DemoResult;
      expect(result.merging).toEqual({ possible: false, needed: expect.stringContaining('sudo npx ksm demo') });
      expect(result.idealBytes).toBeGreaterThan(3 * 2 ** 20);
      expect(result.coverage).toBeGreaterThan(0.9);
      expect(result.savedBytes).toBe(0);
      expect(knobFiles()).toEqual(before);
    });
  }, DEMO_TEST_TIMEOUT_MS);

  it('refuses options out of range as usage errors', async () => {
    await expect(demoCommand.run(['--workers', '1'], bufferContext())).rejects.toThrow(/workers must be a whole number from 2 to 64/);
    await expect(demoCommand.run(['--mode', 'fast'], bufferContext())).rejects.toThrow(/--mode must be auto, prctl or madvise/);
  });
});
