import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryAnalysis } from '../../lib/analysis/analyze.js';
import { analyzeCommand } from '../../lib/cli/commands/analyze.js';
import { UsageError } from '../../lib/cli/usage.js';
import { requireOrSkip } from '../helpers/e2e.js';
import { bufferContext } from './cli-context.js';
import { exitedPid, startFixture, stopFixtures, type FixtureProcess } from './fixture.js';

let fixtures: FixtureProcess[] = [];

beforeAll(async () => {
  const layout = { shared: 32, repeated: 4, zero: 4, unique: 4, adviseShared: true };
  fixtures = await Promise.all([startFixture(layout), startFixture(layout)]);
});

afterAll(async () => {
  await stopFixtures(fixtures);
});

describe('ksm analyze', () => {
  it('prints one row per process, the ideal split, and the unreadable PIDs, exiting 0', async () => {
    const gone = await exitedPid();
    const context = bufferContext();
    const code = await analyzeCommand.run([...fixtures.map((f) => String(f.pid)), String(gone)], context);
    expect(code).toBe(0);
    const text = context.out();
    for (const f of fixtures) expect(text).toMatch(new RegExp(`^\\s*${f.pid}\\s+fixture-pages\\s`, 'm'));
    expect(text).toMatch(/^ideal saving:\s+\d+\.\d MiB/m);
    expect(text).toMatch(/^ {2}across processes:\s+\d+\.\d MiB/m);
    expect(text).toContain(`PID ${gone}: no such process (it has exited) [ENOENT]`);
  });

  it('prints analyzeMemory() as JSON with --json', async () => {
    const context = bufferContext();
    expect(await analyzeCommand.run([String(fixtures[0]?.pid), '--json'], context)).toBe(0);
    const analysis = JSON.parse(context.out()) as MemoryAnalysis;
    expect(analysis.processes[0]?.pid).toBe(fixtures[0]?.pid);
    expect(analysis.ideal.withinProcessBytes).toBeGreaterThanOrEqual(3 * 4096);
  });

  it('exits 1 when no process could be read', async () => {
    const context = bufferContext();
    expect(await analyzeCommand.run([String(await exitedPid())], context)).toBe(1);
    expect(context.out()).toContain('No process could be read.');
  });

  it('analyses the processes of a cgroup and of its children', async (ctx) => {
    const hierarchy = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'].find((dir) => existsSync(join(dir, 'cgroup.subtree_control')));
    requireOrSkip(ctx, process.getuid?.() !== 0 ? 'creating a cgroup needs root' : hierarchy ? undefined : 'no cgroup v2 hierarchy mounted');
    const parent = join(hierarchy ?? '', `ksm-analyze-test-${process.pid}`);
    const child = join(parent, 'inner');
    mkdirSync(child, { recursive: true });
    const home = readFileSync('/proc/self/cgroup', 'utf8').match(/^0::(.*)$/m)?.[1] ?? '/';
    try {
      writeFileSync(join(parent, 'cgroup.procs'), String(fixtures[0]?.pid));
      writeFileSync(join(child, 'cgroup.procs'), String(fixtures[1]?.pid));
      const context = bufferContext();
      // The path as /proc/PID/cgroup prints it.
      expect(await analyzeCommand.run(['--cgroup', `/ksm-analyze-test-${process.pid}`, '--json'], context)).toBe(0);
      const pids = (JSON.parse(context.out()) as MemoryAnalysis).processes.map((p) => p.pid);
      expect(pids.sort()).toEqual(fixtures.map((f) => f.pid).sort());
    } finally {
      for (const f of fixtures) writeFileSync(join(hierarchy ?? '', home, 'cgroup.procs'), String(f.pid));
      rmdirSync(child);
      rmdirSync(parent);
    }
  });

  it('refuses no target, two kinds of target, and PIDs that are not numbers', async () => {
    await expect(analyzeCommand.run([], bufferContext())).rejects.toThrow(UsageError);
    await expect(analyzeCommand.run(['1', '--all'], bufferContext())).rejects.toThrow(/exactly one of them/);
    await expect(analyzeCommand.run(['abc'], bufferContext())).rejects.toThrow(/PID needs a whole number/);
    await expect(analyzeCommand.run(['--cgroup', '/no/such/cgroup'], bufferContext())).rejects.toThrow(/is not a cgroup/);
  });
});
