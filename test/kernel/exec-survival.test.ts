// `ksm run` and ksm-exec in auto mode on a kernel that accepts PR_SET_MEMORY_MERGE but
// drops it at execve (6.4-6.6), played by KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC=1, and on
// this kernel as it is. What is right is decided by our own probe of the kernel
// (probedKernel()), the result read from the program's smaps and environment.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { launcher, preloadLibrary } from '../../lib/core/paths.js';
import { initSnippet } from '../../lib/deploy/snippets.js';
import { BIN, runInProcess } from '../cli/harness.js';
import { ksmUnavailable, probedKernel, requireOrSkip } from '../helpers/e2e.js';
import { coverage } from '../helpers/smaps.js';
import { buildLauncher, buildWorkload, coverageReaching, startWorkload } from '../preload/native-build.js';

const LOST_AT_EXEC = { KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC: '1' };

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) if (name === 'LD_PRELOAD' || name.startsWith('KSM_PRELOAD_')) delete env[name];
  return { ...env, KSM_PRELOAD_VERBOSE: '1', ...extra };
}

/** How auto mode must reach the program: prctl only where the flag survives exec. */
function rightWay(lostAtExecPlayed: boolean): 'prctl' | 'library' {
  return probedKernel().execSurvival && !lostAtExecPlayed ? 'prctl' : 'library';
}

/** Starts the C workload through `launch` and reads how it was reached. */
async function reachedHow(launch: string[], env: NodeJS.ProcessEnv, library: string) {
  const [command = '', ...args] = launch;
  const running = await startWorkload(command, [...args, buildWorkload()], env);
  try {
    const pid = running.child.pid ?? -1;
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const preload = environ.find((entry) => entry.startsWith('LD_PRELOAD='))?.slice('LD_PRELOAD='.length);
    const marked = await coverageReaching(pid, 0.95);
    return { pid, preload, libraryFirst: preload?.split(':')[0] === library, environ, ratio: marked.ratio, stderr: running.stderr() };
  } finally {
    expect(await running.finish()).toBe(0);
  }
}

describe.each([
  ['on a kernel that drops the flag at exec (test switch)', true],
  ['on this kernel', false],
] as const)('auto mode %s', (_kernel, lostAtExecPlayed) => {
  const env = (): NodeJS.ProcessEnv => cleanEnv(lostAtExecPlayed ? LOST_AT_EXEC : {});

  it('ksm-exec marks the program: by prctl only where the flag survives exec, else by the library first in LD_PRELOAD', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const exec = buildLauncher();
    const reached = await reachedHow([exec, '--'], env(), join(dirname(exec), 'libksm_preload.so'));
    if (rightWay(lostAtExecPlayed) === 'library') {
      expect(reached.libraryFirst).toBe(true);
      expect(reached.environ).toContain('KSM_PRELOAD_MODE=madvise');
      expect(reached.stderr).toMatch(/ksm-exec: mode madvise: (this kernel drops PR_SET_MEMORY_MERGE at execve|PR_SET_MEMORY_MERGE refused)/);
    } else {
      expect(reached.preload).toBeUndefined();
      expect(reached.stderr).toMatch(/ksm-exec: mode prctl: PR_SET_MEMORY_MERGE set, kept across exec/);
    }
    expect(reached.ratio).toBeGreaterThanOrEqual(0.95);
  });

  it('`ksm run` does the same, in place of itself', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable() ?? launcher().reason ?? preloadLibrary().reason);
    const reached = await reachedHow([process.execPath, BIN, 'run', '--'], env(), preloadLibrary().path ?? '');
    if (rightWay(lostAtExecPlayed) === 'library') {
      expect(reached.libraryFirst).toBe(true);
    } else {
      expect(reached.preload).toBeUndefined();
    }
    expect(reached.ratio).toBeGreaterThanOrEqual(0.95);
  });
});

describe('prctl mode on a kernel that drops the flag at exec (test switch)', () => {
  it('ksm-exec says the program runs unmarked, and it does', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const running = await startWorkload(buildLauncher(), ['--mode', 'prctl', '--', buildWorkload()], cleanEnv(LOST_AT_EXEC));
    try {
      // Give a marker, were there one, the time it takes elsewhere.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(coverage(running.child.pid ?? -1).mergeableKb).toBe(0);
      expect(running.stderr()).toMatch(probedKernel().prctl ? /this kernel drops PR_SET_MEMORY_MERGE at execve; .* runs unmarked/ : /PR_SET_MEMORY_MERGE refused/);
    } finally {
      expect(await running.finish()).toBe(0);
    }
  });
});

/** The major version of systemd here, read by ourselves; 0 without it. */
function systemdVersion(): number {
  try {
    return Number(/^systemd (\d+)/.exec(execFileSync('systemctl', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

describe('MemoryKSM=yes and doctor follow the probe', () => {
  afterEach(() => vi.unstubAllEnvs());

  it.each([
    ['on a kernel that drops the flag at exec (test switch)', true],
    ['on this kernel', false],
  ] as const)('the systemd snippet offers MemoryKSM=yes only where the flag survives exec and systemd is 256+, %s', (_kernel, lostAtExecPlayed) => {
    if (lostAtExecPlayed) vi.stubEnv('KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', '1');
    const snippet = initSnippet({ format: 'systemd', libPath: '/usr/lib/libksm_preload.so' });
    const memoryKsm = rightWay(lostAtExecPlayed) === 'prctl' && systemdVersion() >= 256;
    expect(snippet.includes('MemoryKSM=yes')).toBe(memoryKsm);
    expect(snippet.includes('LD_PRELOAD=/usr/lib/libksm_preload.so')).toBe(!memoryKsm);
  });

  it('doctor warns about exec survival under the switch, with what to do', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    vi.stubEnv('KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', '1');
    const checks = JSON.parse((await runInProcess(['doctor', '--json'])).stdout) as Array<{ name: string; status: string; fix?: string }>;
    expect(checks.find((check) => check.name === 'exec survival')).toMatchObject({ status: 'warn', fix: expect.stringMatching(/LD_PRELOAD form/) });
  });
});
