import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { preloadLibrary } from '../../lib/core/paths.js';
import { ksmUnavailable, probedKernel, requireOrSkip } from '../helpers/e2e.js';
import { waitFor } from '../helpers/ksmd.js';
import { readSmaps } from '../helpers/smaps.js';
import { BIN, runBin, runInProcess } from './harness.js';

function runSpawned(args: string[], env: NodeJS.ProcessEnv = process.env): { pid: number; code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, 'run', ...args], { encoding: 'utf8', env, timeout: 30_000 });
  return { pid: result.pid ?? -1, code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function firstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  return new Promise((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text.split('\n')[0] ?? '');
    });
    stream.on('end', () => reject(new Error(`no line before the end of output: ${JSON.stringify(text)}`)));
  });
}

describe('ksm run (exec in place)', () => {
  it('the program keeps ksm\'s pid, has no Node parent, and is marked: by prctl where the flag survives exec, else by the library', (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const env = { ...process.env };
    delete env.LD_PRELOAD;
    const result = runSpawned(['--', 'sh', '-c', 'echo "$$ $PPID ${LD_PRELOAD-none}"; grep -c "^VmFlags:.* mg" /proc/$$/smaps'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const [pid, parent, preload] = (result.stdout.split('\n')[0] ?? '').split(' ');
    expect(Number(pid)).toBe(result.pid); // the process spawned as `node bin/ksm.js` became sh
    expect(Number(parent)).toBe(process.pid); // its parent is this test: no Node process in between
    expect(preload).toBe(probedKernel().execSurvival ? 'none' : preloadLibrary().path);
    expect(Number(result.stdout.split('\n')[1])).toBeGreaterThan(0); // mappings with mg
  });

  it('--mode madvise preloads the library in front of the old LD_PRELOAD and marks memory (smaps mg)', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const library = preloadLibrary().path ?? '';
    const existing = '/nonexistent/libother.so';
    const script = "import os, sys, time\nb = bytearray(b'\\x01') * (8 << 20)\nprint(os.getpid(), os.environ['LD_PRELOAD'], flush=True)\ntime.sleep(30)";
    const child = spawn(process.execPath, [BIN, 'run', '--mode', 'madvise', '--', '/usr/bin/python3', '-c', script], {
      env: { ...process.env, LD_PRELOAD: existing },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const line = await firstLine(child.stdout);
      const [pid, preload] = line.split(' ');
      expect(Number(pid)).toBe(child.pid);
      expect(preload).toBe(`${library}:${existing}`);
      const markedKb = (): number =>
        readSmaps(Number(pid))
          .filter((mapping) => mapping.flags.includes('mg'))
          .reduce((sum, mapping) => sum + mapping.anonymousKb, 0);
      await waitFor(() => markedKb() >= 8 * 1024, 5000);
      expect(markedKb()).toBeGreaterThanOrEqual(8 * 1024);
      // Kernels that say so (6.14+) confirm the library marked it, not prctl.
      const ksmStat = spawnSync('cat', [`/proc/${pid}/ksm_stat`], { encoding: 'utf8' }).stdout;
      if (ksmStat.includes('ksm_merge_any')) expect(ksmStat).toContain('ksm_merge_any: no');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('passes the program\'s exit code through, and 127 for a missing command', () => {
    expect(runSpawned(['--', 'sh', '-c', 'exit 7']).code).toBe(7);
    const missing = runSpawned(['--', 'ksm-no-such-command']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/ksm-no-such-command/);
  });
});

describe('ksm run without the addon (spawned child fallback)', () => {
  const env = { ...process.env, KSM_PRELOAD_NO_ADDON: '1', LD_PRELOAD: '/nonexistent/libother.so' };

  it('starts the program with the library first in LD_PRELOAD, once, and returns its exit code', () => {
    const library = preloadLibrary().path ?? '';
    const result = runSpawned(['--mode', 'madvise', '--', 'sh', '-c', 'printf "%s|%s|%s" "$$" "$LD_PRELOAD" "$KSM_PRELOAD_MODE"; exit 5'], {
      ...env,
      LD_PRELOAD: `/nonexistent/libother.so ${library}:/opt/third.so`,
    });
    expect(result.code).toBe(5);
    const [pid, preload, mode] = result.stdout.split('|');
    expect(Number(pid)).not.toBe(result.pid); // a child this time
    expect(preload).toBe(`${library}:/nonexistent/libother.so:/opt/third.so`);
    expect(mode).toBe('madvise');
  });

  it('forwards SIGTERM to the program and exits with its code', async () => {
    const child = spawn(process.execPath, [BIN, 'run', '--', 'sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done'], {
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
    expect(code).toBe(42);
  });

  it('says command not found with 127', () => {
    const result = runSpawned(['--', 'ksm-no-such-command'], env);
    expect(result.code).toBe(127);
    expect(result.stderr).toMatch(/ksm: ksm-no-such-command: command not found/);
  });
});

describe('ksm run usage', () => {
  it.each([
    [['run'], /which program\?/],
    [['run', '--mode', 'turbo', '--', 'true'], /--mode takes auto, prctl, madvise, off/],
  ])('%j exits 2', async (args, message) => {
    const result = await runInProcess(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('flags after -- belong to the program', () => {
    const result = runBin(['run', '--', 'sh', '-c', 'echo "$1"', 'sh', '--help']);
    expect(result.stdout).toBe('--help\n');
  });
});
