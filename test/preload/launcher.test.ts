import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ksmUnavailable, probedKernel, requireOrSkip } from '../helpers/e2e.js';
import { buildFixture, buildLauncher, buildWorkload, coverageReaching, fixturesDir, startWorkload } from './native-build.js';

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ['LD_PRELOAD', 'KSM_PRELOAD_MODE', 'KSM_PRELOAD_LIB', 'KSM_PRELOAD_TEST_NO_PRCTL', 'KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC']) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

function launch(args: string[], env = cleanEnv()) {
  return spawnSync(buildLauncher(), args, { env, encoding: 'utf8' });
}

const shellPrintsItself = ['sh', '-c', 'echo "$$ ${LD_PRELOAD-unset} ${KSM_PRELOAD_MODE-unset}"; grep -c "^VmFlags:.* mg" /proc/$$/smaps || true'];

describe('ksm-exec', () => {
  it('prctl mode: the exec\'d program is marked (smaps mg) without LD_PRELOAD, in the same pid, where the flag survives exec', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const child = spawnSync(buildLauncher(), ['--mode', 'prctl', '--', ...shellPrintsItself], { env: cleanEnv(), encoding: 'utf8' });
    expect(child.status).toBe(0);
    const [pid, preload, mode] = child.stdout.split('\n')[0]!.split(' ');
    // The shell's own pid is the launcher's: it exec'd in place, no parent left.
    expect(Number(pid)).toBe(child.pid);
    expect(preload).toBe('unset');
    expect(mode).toBe('unset');
    const kernel = probedKernel();
    const markedMappings = Number(child.stdout.split('\n')[1]);
    if (kernel.execSurvival) {
      expect(markedMappings).toBeGreaterThan(0);
      expect(child.stderr).toBe('');
    } else {
      expect(markedMappings).toBe(0);
      expect(child.stderr).toMatch(kernel.prctl ? /drops PR_SET_MEMORY_MERGE at execve; sh runs unmarked/ : /PR_SET_MEMORY_MERGE refused .*; sh runs unmarked/);
    }
  });

  it('its exec-survival probe is fooled neither by a library preloaded into ksm-exec nor by an ignored SIGCHLD', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const kernel = probedKernel();
    const library = join(dirname(buildLauncher()), 'libksm_preload.so');
    // The library would set the flag again in an exec'd probe that inherited LD_PRELOAD.
    const preloaded = launch(['--probe-kernel'], cleanEnv({ LD_PRELOAD: library, KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC: '1' }));
    expect(preloaded.stdout).toContain(`exec-survival ${kernel.prctl ? 'lost' : 'none'}\n`);
    const ignoreChildrenThenExec = 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])';
    const ignoring = spawnSync('python3', ['-c', ignoreChildrenThenExec, buildLauncher(), '--probe-kernel'], { env: cleanEnv(), encoding: 'utf8' });
    expect(ignoring.stdout).toContain(`exec-survival ${kernel.prctl ? (kernel.execSurvival ? 'kept' : 'lost') : 'none'}\n`);
  });

  it('madvise mode: the library goes in front of the old LD_PRELOAD, once', () => {
    const launcher = buildLauncher();
    const library = join(dirname(launcher), 'libksm_preload.so');
    const old = `/usr/lib/does-not-matter.so ${library}:/opt/other.so`;
    const result = launch(['--mode=madvise', ...shellPrintsItself], cleanEnv({ LD_PRELOAD: old }));
    expect(result.stdout.split('\n')[0]).toMatch(new RegExp(`^\\d+ ${library}:/usr/lib/does-not-matter.so:/opt/other.so madvise$`));
  });

  it('auto mode falls back to LD_PRELOAD when prctl is refused, and the program ends up marked', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const running = await startWorkload(buildLauncher(), [buildWorkload()], cleanEnv({ KSM_PRELOAD_TEST_NO_PRCTL: '1' }));
    try {
      const environ = readFileSync(`/proc/${running.child.pid}/environ`, 'utf8').split('\0');
      expect(environ).toContain('KSM_PRELOAD_MODE=madvise');
      expect((await coverageReaching(running.child.pid!, 0.95)).ratio).toBeGreaterThanOrEqual(0.95);
    } finally {
      expect(await running.finish()).toBe(0);
    }
  });

  it('exits 127 like a shell when the command does not exist, 126 when it cannot run', () => {
    const missing = launch(['--mode', 'off', 'no-such-command-ksm']);
    expect(missing.status).toBe(127);
    expect(missing.stderr).toBe('ksm-exec: no-such-command-ksm: command not found\n');
    const notExecutable = launch(['--mode', 'off', join(fixturesDir, 'hello.c')]);
    expect(notExecutable.status).toBe(126);
  });

  it('refuses library paths LD_PRELOAD cannot carry', () => {
    for (const path of ['/tmp/a b.so', '/tmp/a:b.so', '/tmp/$LIB/x.so', 'relative.so']) {
      const result = launch(['--mode', 'madvise', '--lib', path, 'true']);
      expect(result.status).toBe(125);
      expect(result.stderr).toContain('LD_PRELOAD cannot carry this library path');
    }
  });

  it('rejects a bad --mode and a missing command with usage status 125', () => {
    expect(launch(['--mode', 'banana', 'true']).status).toBe(125);
    expect(launch([]).status).toBe(125);
  });

  it('says when a static program cannot be reached without prctl', () => {
    const staticProgram = buildFixture('hello', {}, ['-static']);
    const result = launch([staticProgram], cleanEnv({ KSM_PRELOAD_TEST_NO_PRCTL: '1' }));
    expect(result.stdout).toBe('hello o\n');
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringContaining('is statically linked')]);
  });

  it('gives the program the default SIGPIPE even when its parent ignored it', async () => {
    // Node ignores SIGPIPE; spawn from a shell that ignores it too, as a shell's `trap '' PIPE` would.
    const child = spawn('sh', ['-c', `trap '' PIPE; exec "$0" --mode off -- grep SigIgn /proc/self/status`, buildLauncher()], { env: cleanEnv() });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await new Promise((resolve) => child.once('close', resolve));
    const ignored = BigInt(`0x${/SigIgn:\s+([0-9a-f]+)/.exec(out)?.[1] ?? 'ffff'}`);
    expect(ignored & (1n << 12n)).toBe(0n); // bit 13-1: SIGPIPE
  });
});
