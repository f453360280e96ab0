// `ksm attach` / `ksm detach` and the checks before any ptrace call: exit codes,
// --json, the warning, and the refusals (itself, kernel threads, setuid, other
// users, traced, stopped or vanishing targets), each leaving the target untraced.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { attachProcess, detachProcess, SAME_DOMAIN_WARNING } from '../../lib/attach/attach.js';
import { permissionAdvice } from '../../lib/attach/helper.js';
import { attachRefusal, parseCredentials } from '../../lib/attach/safety.js';
import { attachHelper } from '../../lib/core/paths.js';
import { runInProcess } from '../cli/harness.js';
import { requireOrSkip } from '../helpers/e2e.js';
import { requireTool } from '../helpers/tools.js';
import { attachUnavailable, removeFixture, sleep, startProgram, startTarget, stop, targetBinary } from './targets.js';

afterAll(removeFixture);

function statusField(pid: number, field: string): string {
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
}

const STATUS = (uid: string, gid: string, capEff: string): string => `Name:\tx\nTracerPid:\t0\nUid:\t${uid}\nGid:\t${gid}\nCapEff:\t${capEff}\nSeccomp:\t0\n`;

describe('usage', () => {
  it.each([
    [[]],
    [['abc']],
    [['0']],
    [['1', '--mode', 'fast']],
    [['1', '--timeout-ms', '1.5']],
    [['1', '--watch', '-3']],
    [['1', '--bogus']],
  ])('ksm attach %j exits 2', async (args) => {
    const result = await runInProcess(['attach', ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/ksm: .*\nRun `ksm attach --help`/);
  });

  it('the API rejects bad arguments with TypeError and RangeError', async () => {
    await expect(attachProcess('1' as unknown as number)).rejects.toThrow(TypeError);
    await expect(attachProcess(-1)).rejects.toThrow(RangeError);
    await expect(attachProcess(1, { mode: 'fast' as 'prctl' })).rejects.toThrow(RangeError);
    await expect(attachProcess(1, { timeoutMs: 5 })).rejects.toThrow(RangeError);
    await expect(detachProcess(1, { bogus: 1 } as object)).rejects.toThrow(TypeError);
  });

  it('--help names both modes, the side channel and the exit codes', async () => {
    const result = await runInProcess(['attach', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/prctl[\s\S]*madvise[\s\S]*NOT covered[\s\S]*side channel[\s\S]*Exit status: 0/);
  });
});

describe('ksm attach and ksm detach on a real process', () => {
  it('--json reports the mode and the warning, exits 0, and leaves the process untraced and running', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('nanosleep', '20000');
    try {
      const attached = await runInProcess(['attach', String(target.pid), '--mode', 'madvise', '--json']);
      expect(attached.code).toBe(0);
      expect(attached.stderr).toContain(SAME_DOMAIN_WARNING);
      const report = JSON.parse(attached.stdout) as { action: string; warning: string; processes: Array<Record<string, unknown>> };
      expect(report).toMatchObject({ action: 'attach', warning: SAME_DOMAIN_WARNING });
      expect(report.processes[0]).toMatchObject({ ok: true, pid: target.pid, mode: 'madvise', coversLaterMappings: false, failedMappings: 0 });
      expect(report.processes[0]?.mappings).toBeGreaterThan(0);
      expect(statusField(target.pid, 'TracerPid')).toBe('0');
      // Running again: back in its sleep, or on its way there (R), never stopped (T, t).
      expect(statusField(target.pid, 'State')).toMatch(/^[RS]/);

      const text = await runInProcess(['attach', String(target.pid)]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`^${target.pid} \\(target\\): attached with prctl: the whole process`));

      const detached = await runInProcess(['detach', String(target.pid), '--json']);
      expect(detached.code).toBe(0);
      expect(JSON.parse(detached.stdout)).toMatchObject({ action: 'detach', processes: [{ ok: true, mode: 'prctl' }] });
    } finally {
      await stop(target);
    }
  });

  it('exits 1 when one PID of several fails, and still attaches the others', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('nanosleep', '20000');
    try {
      const result = await runInProcess(['attach', String(target.pid), String(process.pid), '--json']);
      expect(result.code).toBe(1);
      const report = JSON.parse(result.stdout) as { processes: Array<{ ok: boolean; error?: { code: string } }> };
      expect(report.processes.map((p) => p.ok)).toEqual([true, false]);
      expect(report.processes[1]?.error?.code).toBe('EREFUSED');
    } finally {
      await stop(target);
    }
  });

  it('--watch attaches again each interval until stopped', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('nanosleep', '20000');
    const controller = new AbortController();
    try {
      const running = runInProcess(['attach', String(target.pid), '--mode', 'madvise', '--watch', '0.2', '--json'], { signal: controller.signal });
      await sleep(700);
      controller.abort();
      const result = await running;
      expect(result.code).toBe(0);
      expect(result.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(3);
    } finally {
      await stop(target);
    }
  });
});

describe('refusals', () => {
  it('never attaches to itself, even with --force', async () => {
    await expect(attachProcess(process.pid, { force: true })).rejects.toMatchObject({ name: 'KsmError', code: 'EREFUSED' });
  });

  it('refuses a kernel thread without --force', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const result = await runInProcess(['attach', '2']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/kernel thread/);
  });

  it('refuses a setuid-style process (mixed user IDs) without --force, attaches with it', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    // Real and effective uid nobody, saved uid root: what a setuid-root program looks like.
    const target = await startProgram('/usr/bin/python3', ['-c', 'import os,time; os.setresuid(65534, 65534, 0); print("ready", flush=True); time.sleep(30)']);
    try {
      await expect(attachProcess(target.pid)).rejects.toMatchObject({ code: 'EREFUSED', message: expect.stringMatching(/setuid/) });
      expect((await attachProcess(target.pid, { force: true })).mode).toBe('prctl');
      await detachProcess(target.pid, { force: true });
    } finally {
      await stop(target);
    }
  });

  it('refuses another user\'s process to a caller without CAP_SYS_PTRACE, and privileged targets', () => {
    const nobody = parseCredentials(STATUS('65534\t65534\t65534\t65534', '65534\t65534\t65534\t65534', '0000000000000000'));
    expect(attachRefusal('t', 1, nobody)).toMatch(/belongs to user 0: .*CAP_SYS_PTRACE/);
    const self = parseCredentials(readFileSync('/proc/self/status', 'utf8'));
    // The test runner's parent runs as root with every capability; this caller, pretended, with none.
    expect(attachRefusal('t', process.ppid, { ...self, capEff: 0n })).toMatch(/holds capabilities this process lacks/);
    expect(parseCredentials('Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapEff:\t0\nSeccomp:\t2\n').seccomp).toBe(2);
  });

  it('the kernel refuses the helper for another user\'s process; the error names the fix', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('nanosleep', '20000');
    try {
      const helper = attachHelper().path ?? '';
      const run = spawnSync(helper, ['attach', String(target.pid)], { encoding: 'utf8', uid: 65534, gid: 65534 });
      expect(run.status).toBe(1);
      expect(JSON.parse(run.stdout)).toMatchObject({ error: { code: 'EPERM', step: 'seize' } });
      expect(permissionAdvice(helper, 1)).toMatch(/ptrace_scope is 1.*setcap cap_sys_ptrace\+ep.*\/proc\/sys\/kernel\/yama\/ptrace_scope/);
      expect(permissionAdvice(helper, undefined)).toMatch(/run as root/);
      expect(statusField(target.pid, 'TracerPid')).toBe('0');
    } finally {
      await stop(target);
    }
  });

  it('refuses a process that is already traced, naming the tracer', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    requireTool(ctx, 'strace');
    const traced = await startProgram('strace', ['-o', '/dev/null', targetBinary(), 'nanosleep', '20000']);
    const pid = Number(readFileSync(`/proc/${traced.pid}/task/${traced.pid}/children`, 'utf8').trim());
    try {
      await expect(attachProcess(pid)).rejects.toMatchObject({ code: 'EBUSY', message: expect.stringMatching(/already traced by process \d+ \(strace\)/) });
    } finally {
      process.kill(pid, 'SIGKILL');
      await stop(traced);
    }
  });

  it('gives a job-control-stopped process back still stopped and untraced', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('nanosleep', '20000');
    try {
      process.kill(target.pid, 'SIGSTOP');
      // Stopped means the kernel says T: a SIGSTOP still in flight is not a stopped process yet.
      for (let i = 0; i < 100 && !/^T/.test(statusField(target.pid, 'State')); i++) await sleep(50);
      await expect(attachProcess(target.pid)).rejects.toMatchObject({ code: 'EAGAIN', message: expect.stringMatching(/job control/) });
      expect(statusField(target.pid, 'State')).toMatch(/^T/);
      expect(statusField(target.pid, 'TracerPid')).toBe('0');
      process.kill(target.pid, 'SIGCONT');
      await sleep(100);
      // Running again: back in its sleep, or on its way there (R), never stopped (T, t).
      expect(statusField(target.pid, 'State')).toMatch(/^[RS]/);
    } finally {
      await stop(target);
    }
  });

  it('reports a target killed while being attached as gone (ESRCH) and never hangs', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const outcomes = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const target = await startTarget('torture', '2', '10');
      const attaching = attachProcess(target.pid, { mode: 'madvise' }).then(
        () => 'attached',
        (error: { code?: string }) => error.code ?? 'unknown',
      );
      await sleep(i);
      target.child.kill('SIGKILL');
      outcomes.add(await attaching);
      await stop(target);
    }
    for (const outcome of outcomes) expect(['attached', 'ESRCH']).toContain(outcome);
  });
});

describe('the helper on its own', () => {
  it('refuses its parent and prints usage with exit 2', (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const helper = attachHelper().path ?? '';
    const parent = spawnSync('/bin/sh', ['-c', `exec ${helper} attach $$`], { encoding: 'utf8' });
    expect(parent.status).toBe(1);
    expect(JSON.parse(parent.stdout)).toMatchObject({ error: { code: 'EINVAL', message: 'refusing to attach to itself' } });
    expect(spawnSync(helper, ['attach'], { encoding: 'utf8' }).status).toBe(2);
    expect(spawnSync(helper, ['frob', '1'], { encoding: 'utf8' }).status).toBe(2);
  });

  it('gives up at its deadline, untraced, when the thread cannot be stopped', async (ctx) => {
    requireOrSkip(ctx, attachUnavailable());
    const target = await startTarget('vfork', '2000');
    try {
      await sleep(200);
      const started = Date.now();
      await expect(attachProcess(target.pid, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect(Date.now() - started).toBeLessThan(1500);
      expect(statusField(target.pid, 'TracerPid')).toBe('0');
      const { code, output } = await target.exited;
      expect(output).toMatch(/vfork returned after \d+/);
      expect(code).toBe(0);
    } finally {
      await stop(target);
    }
  });
});
