import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { AS_NOBODY, ksm, ksmArgv } from './support/cli.js';
import { fixture } from './support/native-build.js';
import { cleanEnv, explain, ksmExecPath, libraryPath, run, runHeld, type HeldRun } from './support/run.js';

// RELIABILITY.md §8: where the library cannot act (a static binary, a setuid
// binary, a kernel that refuses prctl) the program still runs, and nothing
// claims success: no `mg` mapping goes with a warning that it runs unmarked,
// and no claim ("PR_SET_MEMORY_MERGE set", "N mappings marked") goes without
// `mg` in smaps.

const UNMARKED_WARNING = /unmarked|not effective|cannot reach/i;
const SUCCESS_CLAIM = /PR_SET_MEMORY_MERGE (set|accepted|inherited)|[1-9]\d* mappings? marked/;

let work: string;
let reference: string;
let staticProgram: string;
let setuidProgram: string;

beforeAll(() => {
  reference = run(fixture('alloc_mix'), []).stdout.toString();
  staticProgram = fixture('alloc_mix', { flags: ['-O2', '-static'], libs: [] });
  work = mkdtempSync(join(tmpdir(), 'ksm-cannot-act-'));
  chmodSync(work, 0o755);
  setuidProgram = join(work, 'alloc_mix-setuid');
  copyFileSync(fixture('alloc_mix'), setuidProgram);
  chmodSync(setuidProgram, 0o4755);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs argv held, checks the program ran intact, and that marking and messages agree. */
async function runAndCheckHonesty(argv: string[], env: NodeJS.ProcessEnv): Promise<{ marked: boolean; stderr: string; held: HeldRun }> {
  const [command = '', ...args] = argv;
  const held = await runHeld(command, args, { env: cleanEnv({ KSM_PRELOAD_VERBOSE: '1', ...env }), timeoutMs: 30_000 });
  const stderr = held.stderr.toString();
  expect(held.status, explain(held)).toBe(0);
  expect(held.stdout.toString(), 'the program\'s output').toBe(reference);
  const marked = held.held.mergeableKb > 0;
  if (marked) {
    expect(stderr, 'memory is marked, yet a message says it runs unmarked').not.toMatch(UNMARKED_WARNING);
  } else {
    expect(stderr, 'nothing is marked, and nothing says so').toMatch(UNMARKED_WARNING);
    expect(stderr, 'nothing is marked, yet a message claims success').not.toMatch(SUCCESS_CLAIM);
  }
  return { marked, stderr, held };
}

describe('where the library cannot act, it says so and the program runs on', () => {
  it('a static binary under `ksm run --mode madvise`: runs, unmarked, with a warning', async () => {
    const { marked, stderr } = await runAndCheckHonesty([...ksmArgv(['run', '--mode', 'madvise', '--', staticProgram]).flat()], {});
    expect(marked).toBe(false);
    expect(stderr).toMatch(/statically linked/);
  });

  it('a static binary under `ksm run` on a kernel that refuses prctl: runs, unmarked, with a warning', async () => {
    const { marked } = await runAndCheckHonesty(ksmArgv(['run', '--', staticProgram]).flat(), { KSM_PRELOAD_TEST_NO_PRCTL: '1' });
    expect(marked).toBe(false);
  });

  it('a static binary under `ksm run` where prctl works: marked through the kept PR_SET_MEMORY_MERGE flag', async () => {
    const { marked } = await runAndCheckHonesty(ksmArgv(['run', '--', staticProgram]).flat(), {});
    expect(marked).toBe(true);
  });

  it('a setuid binary run by nobody with LD_PRELOAD: the loader ignores the library, the program runs unmarked', async () => {
    // (No KSM_PRELOAD_VERBOSE: setpriv itself loads the library before it execs, and would report on itself.)
    const held = await runHeld(AS_NOBODY[0] ?? '', [...AS_NOBODY.slice(1), setuidProgram], {
      env: cleanEnv({ LD_PRELOAD: libraryPath(), KSM_PRELOAD_MODE: 'madvise' }),
      timeoutMs: 30_000,
    });
    expect(held.status, explain(held)).toBe(0);
    expect(held.stdout.toString()).toBe(reference);
    expect(held.held.mergeableKb).toBe(0);
  });

  it('a setuid binary run by nobody under `ksm run --mode madvise`: runs, unmarked, with a warning', async () => {
    const { marked, stderr } = await runAndCheckHonesty([...AS_NOBODY, ...ksmArgv(['run', '--mode', 'madvise', '--', setuidProgram]).flat()], {});
    expect(marked).toBe(false);
    expect(stderr).toMatch(/setuid/);
  });

  // The PR_SET_MEMORY_MERGE flag would survive the exec of a setuid-root program (it
  // did on 6.18), opening a side channel from the caller into root's memory: ksm-exec
  // refuses it, and clears a flag inherited from its own parent.
  it.each([['auto', []], ['prctl', ['--mode', 'prctl']]])('a setuid binary run by nobody under `ksm run` (%s): runs, unmarked, with the reason', async (_mode, modeArgs) => {
    const { marked, stderr } = await runAndCheckHonesty([...AS_NOBODY, ...ksmArgv(['run', ...modeArgs, '--', setuidProgram]).flat()], {});
    expect(marked).toBe(false);
    expect(stderr).toMatch(/is setuid to another user: it runs unmarked/);
  });

  it('a setuid binary exec\'d by nobody through ksm-exec from a process that already has the prctl flag: the flag is cleared', async () => {
    // (Not verbose: the outer ksm-exec would truthfully report the flag it set.)
    const launcher = ksmExecPath();
    const held = await runHeld(AS_NOBODY[0] ?? '', [...AS_NOBODY.slice(1), launcher, '--mode', 'prctl', '--', launcher, '--', setuidProgram], {
      env: cleanEnv({}),
      timeoutMs: 30_000,
    });
    expect(held.status, explain(held)).toBe(0);
    expect(held.stdout.toString()).toBe(reference);
    expect(held.held.mergeableKb).toBe(0);
    expect(held.stderr.toString()).toMatch(/is setuid to another user: it runs unmarked/);
  });

  it('a setuid binary run by nobody under ksm-exec on a kernel that refuses prctl: runs, unmarked, with a warning', async () => {
    const { marked } = await runAndCheckHonesty([...AS_NOBODY, ksmExecPath(), '--', setuidProgram], { KSM_PRELOAD_TEST_NO_PRCTL: '1' });
    expect(marked).toBe(false);
  });

  it('KSM_PRELOAD_MODE=prctl on a kernel that refuses prctl: the library says it runs unmarked, output intact', async () => {
    const { marked } = await runAndCheckHonesty([fixture('alloc_mix')], {
      LD_PRELOAD: libraryPath(),
      KSM_PRELOAD_MODE: 'prctl',
      KSM_PRELOAD_TEST_NO_PRCTL: '1',
    });
    expect(marked).toBe(false);
  });

  it('`ksm run --mode prctl` on a kernel that refuses prctl: runs, unmarked, with a warning', async () => {
    const { marked } = await runAndCheckHonesty(ksmArgv(['run', '--mode', 'prctl', '--', fixture('alloc_mix')]).flat(), {
      KSM_PRELOAD_TEST_NO_PRCTL: '1',
    });
    expect(marked).toBe(false);
  });

  it('KSM_PRELOAD_MODE=auto on a kernel that refuses prctl falls back to madvise and marks', async () => {
    const { marked, stderr } = await runAndCheckHonesty([fixture('alloc_mix')], {
      LD_PRELOAD: libraryPath(),
      KSM_PRELOAD_TEST_NO_PRCTL: '1',
    });
    expect(marked).toBe(true);
    expect(stderr).toMatch(/mode madvise/);
  });

  it('`ksm doctor` says prctl and its survival across exec are unavailable when the kernel refuses prctl', (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    const statusOf = (env: NodeJS.ProcessEnv): Record<string, string> => {
      const result = ksm(['doctor', '--json'], { env: cleanEnv(env) });
      const checks = JSON.parse(result.stdout.toString()) as Array<{ name: string; status: string }>;
      return Object.fromEntries(checks.map((check) => [check.name, check.status]));
    };
    const refused = statusOf({ KSM_PRELOAD_TEST_NO_PRCTL: '1' });
    expect(refused.prctl).not.toBe('ok');
    expect(refused['exec survival']).not.toBe('ok');
    const accepted = statusOf({});
    expect(accepted.prctl).toBe('ok');
  });
});
