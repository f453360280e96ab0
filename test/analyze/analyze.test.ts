import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeMemory, measureMergedBytes, type MemoryAnalysis } from '../../lib/analysis/analyze.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { withKsmd } from '../helpers/ksmd.js';
import { startFixture, stopFixtures, type FixtureProcess, type PageLayout } from './fixture.js';

const PAGE = 4096;
const PROCESSES = 3;
const LAYOUT: PageLayout = { shared: 64, repeated: 8, zero: 16, unique: 5, adviseShared: true };
const PER_PROCESS = LAYOUT.shared + LAYOUT.repeated + LAYOUT.zero + LAYOUT.unique;

/** What KSM saves on n identical pages: it keeps one copy per max_page_sharing mappings. */
function groupSaving(pages: number): number {
  const maxSharing = Number(readFileSync('/sys/kernel/mm/ksm/max_page_sharing', 'utf8'));
  return pages - Math.ceil(pages / maxSharing);
}

/** The counts fixture-pages.c makes, derived by hand from its layout. */
const expected = {
  pages: PROCESSES * PER_PROCESS,
  zeroSaving: groupSaving(PROCESSES * LAYOUT.zero),
  withinProcess: PROCESSES * (LAYOUT.repeated - 1),
  // Each shared page has PROCESSES copies; the repeated content adds one group across processes.
  acrossProcesses: LAYOUT.shared * (PROCESSES - 1) + (PROCESSES - 1),
  advisedIdeal: LAYOUT.shared * (PROCESSES - 1),
};
const expectedIdeal = expected.zeroSaving + expected.withinProcess + expected.acrossProcesses;

let fixtures: FixtureProcess[] = [];

const regions = (): Array<{ pid: number; ranges: Array<{ start: number; end: number }> }> =>
  fixtures.map((f) => ({ pid: f.pid, ranges: [f.region] }));

beforeAll(async () => {
  fixtures = await Promise.all(Array.from({ length: PROCESSES }, () => startFixture(LAYOUT)));
});

afterAll(async () => {
  await stopFixtures(fixtures);
});

function expectKnownCounts(analysis: MemoryAnalysis): void {
  expect(analysis.pageSize).toBe(PAGE);
  expect(analysis.residentAnonymousBytes).toBe(expected.pages * PAGE);
  expect(analysis.ideal).toEqual({
    bytes: expectedIdeal * PAGE,
    zeroBytes: expected.zeroSaving * PAGE,
    withinProcessBytes: expected.withinProcess * PAGE,
    acrossProcessesBytes: expected.acrossProcesses * PAGE,
  });
  expect(analysis.uniqueBytes).toBe((expected.pages - expectedIdeal) * PAGE);
  expect(analysis.advisedBytes).toBe(PROCESSES * LAYOUT.shared * PAGE);
  expect(analysis.idealAdvisedBytes).toBe(expected.advisedIdeal * PAGE);
  expect(analysis.idealUnadvisedBytes).toBe((expectedIdeal - expected.advisedIdeal) * PAGE);
  expect(analysis.coverage).toBeCloseTo(LAYOUT.shared / PER_PROCESS, 10);
  for (const process of analysis.processes) {
    expect(process.error).toBeUndefined();
    expect(process.command).toBe('fixture-pages');
    expect(process.residentAnonymousBytes).toBe(PER_PROCESS * PAGE);
    expect(process.zeroBytes).toBe(LAYOUT.zero * PAGE);
    expect(process.duplicateBytes).toBe((LAYOUT.repeated - 1) * PAGE);
  }
}

describe('analyzeMemory on processes with known pages', () => {
  it('counts zero pages, duplicates within and across processes, and the advised part exactly', async () => {
    const analysis = await analyzeMemory(regions());
    expectKnownCounts(analysis);
    expect(analysis.bytesPerSecond).toBeGreaterThan(0);
  });

  it('covers the whole process when no range is given', async () => {
    const whole = await analyzeMemory(fixtures.map((f) => f.pid));
    const region = await analyzeMemory(regions());
    // The C runtime's own pages come on top of the region; nothing of the region is lost.
    expect(whole.residentAnonymousBytes).toBeGreaterThan(region.residentAnonymousBytes);
    expect(whole.ideal.bytes).toBeGreaterThanOrEqual(region.ideal.bytes);
    expect(whole.processes.map((p) => p.pid)).toEqual(fixtures.map((f) => f.pid));
  });

  it('refuses malformed targets before reading anything', async () => {
    await expect(analyzeMemory([0])).rejects.toThrow(RangeError);
    await expect(analyzeMemory([{ pid: fixtures[0]?.pid ?? 1, ranges: [{ start: 10, end: 5 }] }])).rejects.toThrow(/0 ≤ start ≤ end/);
  });

  it('predicts what ksmd then merges, and sees the merged pages as merged', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const target = expected.advisedIdeal * PAGE;
      const deadline = Date.now() + 30_000;
      let analysis = await analyzeMemory(regions());
      while (analysis.mergedBytes !== target && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        analysis = await analyzeMemory(regions());
      }
      expect(analysis.mergedBytes).toBe(target);
      // Merging changes no content: the prediction is the same as before merging.
      expectKnownCounts(analysis);
      for (const process of analysis.processes) expect(process.ksmBytes).toBe(LAYOUT.shared * PAGE);
      // The cheap measurement (no contents read) of the whole processes finds the same saving:
      // nothing outside the advised region can merge.
      expect(await measureMergedBytes(fixtures.map((f) => f.pid))).toBe(target);
      // ksmd's own count of merged mappings agrees for the fixture processes.
      for (const f of fixtures) {
        expect(Number(readFileSync(`/proc/${f.pid}/ksm_merging_pages`, 'utf8'))).toBe(LAYOUT.shared);
      }
    });
  }, 180_000); // room for the machine-wide KSM lock, which another test may hold
});
