import { expect } from 'vitest';
import { explain, modeEnv, percent, runHeld, type Mode } from './run.js';

/**
 * Runs a torture fixture in one mode, holding it before exit: it must finish
 * in time with exit 0 and the expected summary line, and in madvise and prctl
 * mode the library must have marked memory (else the run proved nothing).
 */
export async function expectSurvives(mode: Mode, program: string, args: string[], summary: string | RegExp, timeoutMs: number): Promise<void> {
  const result = await runHeld(program, args, { env: modeEnv(mode), timeoutMs });
  expect(result.timedOut, `hung: killed after ${timeoutMs / 1000} s`).toBe(false);
  expect(result.status, explain(result)).toBe(0);
  if (typeof summary === 'string') expect(result.stdout.toString()).toBe(summary);
  else expect(result.stdout.toString()).toMatch(summary);
  console.log(`${program.split('/').pop()} ${args.join(' ')} [${mode}]: coverage ${percent(result.held.ratio)} of ${result.held.anonymousKb} kB, ${result.held.vmas} VMAs`);
  if (mode !== 'off') expect(result.held.mergeableKb, `nothing marked mergeable in ${mode} mode`).toBeGreaterThan(0);
  else expect(result.held.mergeableKb).toBe(0);
}
