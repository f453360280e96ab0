import { describe, expect, it } from 'vitest';
import { fixture } from './support/native-build.js';
import { cleanEnv, explain, ksmExecPath, libraryPath, run } from './support/run.js';

// RELIABILITY.md §9 (environment): a malformed value in any variable the library
// or the launcher reads gives exactly one stderr line that names the variable
// (printable, bounded), the default is used, and the program's output is intact.

const LIBRARY_VARIABLES = [
  'KSM_PRELOAD_MODE',
  'KSM_PRELOAD_MIN_BYTES',
  'KSMP_MERGE_THRESHOLD',
  'KSM_PRELOAD_VERBOSE',
  'KSM_PRELOAD_TEST_NO_PRCTL',
  'KSM_PRELOAD_TEST_NO_PROCMAP_QUERY',
];

/** Values no variable accepts; each reaches the program's environment unchanged. */
const HOSTILE_VALUES = [
  'bogus',
  'MADVISE',
  ' prctl',
  '-1',
  '1e6',
  '12abc',
  '99999999999999999999999999',
  '0x10',
  'ünïcødé',
  '\u001b[31mred\u001b[0m',
  '%s%s%s%n',
  'a'.repeat(100_000),
];

/** Plus values that are valid elsewhere: a byte count is no boolean, a boolean word no byte count. */
const EXTRA: Record<string, string[]> = {
  KSM_PRELOAD_MODE: ['1', 'yes'],
  KSM_PRELOAD_MIN_BYTES: ['yes', '1099511627777'],
  KSMP_MERGE_THRESHOLD: ['yes', '1099511627777'],
  KSM_PRELOAD_VERBOSE: ['2', 'madvise'],
  KSM_PRELOAD_TEST_NO_PRCTL: ['2', 'madvise'],
  KSM_PRELOAD_TEST_NO_PROCMAP_QUERY: ['2', 'madvise'],
};

const hostile = (variable: string): string[] => [...HOSTILE_VALUES, ...(EXTRA[variable] ?? [])];

let reference: string;

function expectOneWarning(stderr: string, variable: string, who: string): void {
  const lines = stderr.split('\n').filter((line) => line !== '');
  expect(lines, `stderr: ${JSON.stringify(stderr.slice(0, 500))}`).toHaveLength(1);
  const line = lines[0] ?? '';
  expect(line.startsWith(`${who}: ${variable}=`), line).toBe(true);
  expect(line, 'control characters reached the terminal').not.toMatch(/[\u0000-\u001f\u007f]/);
  expect(line.length, 'the warning must stay one short line').toBeLessThan(300);
}

describe('malformed environment values', () => {
  for (const variable of LIBRARY_VARIABLES) {
    it(`${variable}: each hostile value gives one line naming it, the program runs on intact`, () => {
      reference ??= run(fixture('alloc_mix'), []).stdout.toString();
      for (const value of hostile(variable)) {
        // The other variables are tested under madvise mode, where the library reads all of them.
        const env = cleanEnv({ LD_PRELOAD: libraryPath(), KSM_PRELOAD_MODE: 'madvise', [variable]: value });
        const result = run(fixture('alloc_mix'), [], { env, timeoutMs: 30_000 });
        expect(result.status, `${variable}=${JSON.stringify(value.slice(0, 40))}: ${explain(result)}`).toBe(0);
        expect(result.stdout.toString()).toBe(reference);
        expectOneWarning(result.stderr.toString(), variable, 'ksm-preload');
      }
    });
  }

  for (const variable of ['KSM_PRELOAD_MODE', 'KSM_PRELOAD_VERBOSE', 'KSM_PRELOAD_TEST_NO_PRCTL']) {
    it(`ksm-exec: ${variable} hostile values give one line naming it, the program runs on intact`, () => {
      reference ??= run(fixture('alloc_mix'), []).stdout.toString();
      for (const value of hostile(variable)) {
        // --mode prctl keeps the library out, so only ksm-exec reads the variable.
        const args = variable === 'KSM_PRELOAD_MODE' ? ['--', fixture('alloc_mix')] : ['--mode', 'prctl', '--', fixture('alloc_mix')];
        const result = run(ksmExecPath(), args, { env: cleanEnv({ [variable]: value }), timeoutMs: 30_000 });
        expect(result.status, `${variable}=${JSON.stringify(value.slice(0, 40))}: ${explain(result)}`).toBe(0);
        expect(result.stdout.toString()).toBe(reference);
        expectOneWarning(result.stderr.toString(), variable, 'ksm-exec');
      }
    });
  }
});
