import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { requireOrSkip, ksmUnavailable } from '../helpers/e2e.js';
import { withKsmd } from '../helpers/ksmd.js';
import { WITH_KSMD, runBin, runInProcess } from './harness.js';

const run = (): string => readFileSync('/sys/kernel/mm/ksm/run', 'utf8').trim();

describe('ksm enable / disable on the real kernel', () => {
  it('stops, starts, and stops with unmerging', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      expect(run()).toBe('1');
      const stop = await runInProcess(['disable']);
      expect(stop).toMatchObject({ code: 0, stdout: 'run: 1 -> 0\n' });
      expect(run()).toBe('0');
      const start = runBin(['enable', '--json']);
      expect(start.code).toBe(0);
      expect(JSON.parse(start.stdout).changed).toEqual({ run: { from: '0', to: '1' } });
      expect(run()).toBe('1');
      expect((await runInProcess(['enable'])).stdout).toMatch(/nothing to change/);
      expect((await runInProcess(['disable', '--unmerge'])).code).toBe(0);
      expect(run()).toBe('2');
    });
  });

  it('without root: names the knob and the permission, changes nothing', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const result = runBin(['disable'], { uid: 65534, gid: 65534 });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^ksm: writeKsmKnob: cannot write 0 to \/sys\/kernel\/mm\/ksm\/run: needs root/);
      expect(run()).toBe('1');
    });
  });
});
