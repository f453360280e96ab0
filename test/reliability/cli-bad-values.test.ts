import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ksm } from './support/cli.js';
import { fakeSysfs, snapshotTree } from './support/fake-sysfs.js';
import { cleanEnv } from './support/run.js';

// RELIABILITY.md §9 (CLI values): out-of-range and malformed values give exit 2
// and a `ksm: …` message, and nothing is written (validation comes before any
// write). Run against a fake sysfs tree, so that a wrong write would show and
// could never reach the real knobs.

const CASES: string[][] = [
  ['tune', '--pages-to-scan', '-1'],
  ['tune', '--pages-to-scan', '4294967296'],
  ['tune', '--pages-to-scan', '1.5'],
  ['tune', '--pages-to-scan', '1e3'],
  ['tune', '--pages-to-scan', 'lots'],
  ['tune', '--pages-to-scan', ''],
  ['tune', '--pages-to-scan', '0x10'],
  ['tune', '--sleep-ms', '-5'],
  ['tune', '--sleep-ms', '99999999999999999999'],
  ['tune', '--max-page-sharing', '1'],
  ['tune', '--advisor', 'sometimes'],
  ['tune', '--advisor-max-cpu', '0'],
  ['tune', '--advisor-max-cpu', '101'],
  ['tune', '--use-zero-pages', '2'],
  ['tune', '--merge-across-nodes', 'yes'],
  ['tune', '--smart-scan', '-1'],
  // A valid value next to an invalid one: still nothing may be written.
  ['tune', '--pages-to-scan', '1234', '--sleep-ms', '-1'],
  ['tune', '--boost', 'forever'],
  ['tune', '--boost', '-1m'],
  ['tune', '--boost', '10m', '--persist'],
  ['tune'],
  ['tune', '--frobnicate', '1'],
  ['status', '--watch', '0'],
  ['status', '--watch', '-1'],
  ['status', '--watch', 'often'],
  ['top', '--by', 'planet'],
  ['run', '--mode', 'fast', '--', 'true'],
  ['run'],
  ['snippet', 'nosuchformat'],
  ['snippet', 'sysv', '--mode', 'weird'],
  ['snippet'],
  ['disable', '--unmerge=maybe'],
  ['frobnicate'],
  ['status', '--frobnicate'],
];

let sysfs: string;
let before: Record<string, string>;

beforeAll(() => {
  sysfs = fakeSysfs();
  before = snapshotTree(sysfs);
});

afterAll(() => {
  if (sysfs) rmSync(sysfs, { recursive: true, force: true });
});

describe('CLI values out of range', () => {
  for (const args of CASES) {
    it(`ksm ${args.map((a) => (a === '' ? "''" : a)).join(' ')} → exit 2, "ksm: …", nothing written`, () => {
      const result = ksm(args, { env: cleanEnv({ KSM_SYSFS_ROOT: sysfs, KSM_PERSIST_ROOT: sysfs }) });
      const stderr = result.stderr.toString();
      expect(result.status, stderr).toBe(2);
      expect(stderr).toMatch(/^ksm: \S/);
      expect(stderr).toMatch(/--help/);
      expect(snapshotTree(sysfs)).toEqual(before);
    });
  }
});
