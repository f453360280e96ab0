import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntilIdle } from '../../lib/process/idle.js';
import { exitedPid } from './fixture.js';

const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

function start(script: string): number {
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  children.push(child);
  return child.pid ?? 0;
}

describe('waitUntilIdle', () => {
  it('resolves true for a process that sleeps', async () => {
    expect(await waitUntilIdle([start('setTimeout(() => {}, 60_000)')], { timeoutMs: 5000 })).toBe(true);
  });

  it('gives up after the timeout on a process that keeps computing', async () => {
    expect(await waitUntilIdle([start('for (;;) {}')], { timeoutMs: 1500 })).toBe(false);
  });

  it('counts a process that has exited as idle', async () => {
    expect(await waitUntilIdle([await exitedPid()], { timeoutMs: 2000 })).toBe(true);
  });
});
