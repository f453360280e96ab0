import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupByCgroup, type ProcessKsmRow } from '../../lib/process/top.js';
import { requireOrSkip, prctlUnavailable } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { BIN, WITH_KSMD, runBin, runInProcess } from './harness.js';

/** Where this host mounts cgroup v2: /sys/fs/cgroup on pure v2 hosts, /sys/fs/cgroup/unified on hybrid ones. */
function cgroup2Mount(): string | undefined {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[2] === 'cgroup2')?.[1];
}

// Holders outlive a 10-minute wait for the KSM lock; afterAll kills them.
const HOLD_16_MIB = "import sys, time\nb = bytearray(b'\\x07') * (16 << 20)\nprint('ready', flush=True)\ntime.sleep(1800)";
const PAGES_16_MIB = (16 << 20) / 4096;

function startHolder(mode: 'auto' | 'madvise'): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'run', '--mode', mode, '--', '/usr/bin/python3', '-c', HOLD_16_MIB], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
}

function mergingPages(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8'));
}

const skipReason = prctlUnavailable() ?? (cgroup2Mount() ? undefined : 'no cgroup v2 hierarchy is mounted');
const mount = cgroup2Mount() ?? '';
const groups = [`ksm-cli-test-${process.pid}-a`, `ksm-cli-test-${process.pid}-b`];
const holders: ChildProcess[] = [];

describe('ksm top with real processes in two cgroups', () => {
  beforeAll(async () => {
    if (skipReason) return;
    for (const group of groups) mkdirSync(join(mount, group));
    // a: one prctl process and one preloaded (madvise) one; b: one prctl process.
    const placement: Array<[number, 'auto' | 'madvise']> = [
      [0, 'auto'],
      [0, 'madvise'],
      [1, 'auto'],
    ];
    for (const [group, mode] of placement) {
      const holder = await startHolder(mode);
      holders.push(holder);
      writeFileSync(join(mount, groups[group] ?? '', 'cgroup.procs'), String(holder.pid));
    }
  });

  afterAll(async () => {
    await Promise.all(
      holders.map((holder) => new Promise<void>((resolve) => (holder.exitCode !== null ? resolve() : (holder.once('exit', () => resolve()), holder.kill('SIGKILL'))))),
    );
    for (const group of groups) {
      try {
        rmdirSync(join(mount, group));
      } catch {
        // Never created (skipped run).
      }
    }
  });

  it('lists each process with how it opted in, and sums per cgroup', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, skipReason);
    const pids = holders.map((holder) => holder.pid ?? 0);
    await withKsmd(async () => {
      const merged = await waitFor(() => pids.every((pid) => mergingPages(pid) >= PAGES_16_MIB), 60_000);
      expect(merged, 'ksmd merged the 16 MiB of each holder').toBe(true);
      for (let attempt = 0; ; attempt++) {
        const before = pids.map(mergingPages);
        const list = JSON.parse((await runInProcess(['top', '--json'])).stdout);
        const byCgroup = JSON.parse((await runInProcess(['top', '--by', 'cgroup', '--json'])).stdout);
        const after = pids.map(mergingPages);
        if (JSON.stringify(before) !== JSON.stringify(after) && attempt < 10) continue; // still merging: sample again

        const rows = pids.map((pid) => list.processes.find((row: ProcessKsmRow) => row.pid === pid));
        expect(rows.map((row) => row?.methods)).toEqual([['prctl'], ['preload', 'madvise'], ['prctl']]);
        expect(rows.map((row) => row?.cgroup)).toEqual([`/${groups[0]}`, `/${groups[0]}`, `/${groups[1]}`]);
        expect(rows.map((row) => row?.mergingBytes)).toEqual(before.map((pages) => pages * 4096));
        expect(rows[0]?.command).toContain('python3 -c');
        expect(typeof rows[0]?.profitBytes).toBe('number');
        for (const row of rows) expect(row?.savedBytes).toBeGreaterThan(0);
        expect(list.fairShare).toEqual({ available: true });

        const a = byCgroup.cgroups.find((row: { cgroup: string }) => row.cgroup === `/${groups[0]}`);
        const b = byCgroup.cgroups.find((row: { cgroup: string }) => row.cgroup === `/${groups[1]}`);
        expect(a).toMatchObject({ name: `/${groups[0]}`, processes: 2, mergingBytes: ((before[0] ?? 0) + (before[1] ?? 0)) * 4096 });
        expect(b).toMatchObject({ name: `/${groups[1]}`, processes: 1, mergingBytes: (before[2] ?? 0) * 4096 });
        // 16 MiB of one repeated byte: every page shares one content, so nearly every mapping saves a page.
        expect(a.savedBytes).toBeGreaterThan(0.95 * a.mergingBytes);
        expect(a.savedBytes).toBeLessThanOrEqual(a.mergingBytes);
        break;
      }
      const text = runBin(['top', '--by', 'cgroup']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`^/${groups[0]}\\s+2\\s+\\d+\\.\\d MiB\\s+\\d+\\.\\d MiB`, 'm'));
      expect(text.stdout).toMatch(/^NAME\s+PROCS\s+MERGING\s+SAVED\s+KERNEL-PROFIT\s+CGROUP$/m);
      expect(text.stdout).toMatch(/^SAVED credits each of k mappings .* KERNEL-PROFIT is the kernel's ksm_process_profit/m);
    });
  });

  it('counts and reports processes the user may not read', (ctx) => {
    requireOrSkip(ctx, skipReason);
    const result = runBin(['top', '--json'], { uid: 65534, gid: 65534 });
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.unreadable.count).toBeGreaterThanOrEqual(holders.length);
    for (const holder of holders) expect(json.unreadable.pids).toContain(holder.pid);
    expect(json.unreadable.reason).toMatch(/owner and root/);
    const text = runBin(['top'], { uid: 65534, gid: 65534 });
    expect(text.stdout).toMatch(/\d+ unreadable \(.*run as root to include them\)/);
    expect(json.fairShare).toEqual({ available: false, reason: expect.stringMatching(/root/) });
    expect(text.stdout).toMatch(/^SAVED unavailable: .*root.*; KERNEL-PROFIT is the kernel's ksm_process_profit/m);
  });

  it('--watch prints a line per sample off a terminal', async (ctx) => {
    requireOrSkip(ctx, skipReason);
    const controller = new AbortController();
    // Each sample walks the page tables of every merging process (the fair share): give slow hosts time for two.
    setTimeout(() => controller.abort(), 2500);
    const result = await runInProcess(['top', '--watch', '0.2'], { signal: controller.signal });
    const lines = result.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).toMatch(/^\S+Z merging=\d+\.\d MiB \d+ of \d+ readable processes use KSM/);
  });
});

describe('groupByCgroup', () => {
  it('sums merged bytes and profits, most merged first', () => {
    const row = (pid: number, cgroup: string, mergingBytes: number, profitBytes?: number, savedBytes?: number): ProcessKsmRow => ({
      pid, command: 'x', cgroup, mergingPages: mergingBytes / 4096, mergingBytes, profitBytes, savedBytes, methods: ['prctl'],
    });
    expect(groupByCgroup([row(1, '/a', 4096, -10), row(2, '/b', 8192 * 4), row(3, '/a', 8192, 100)])).toEqual([
      { cgroup: '/b', name: '/b', processes: 1, mergingBytes: 32768, profitBytes: undefined, savedBytes: undefined },
      { cgroup: '/a', name: '/a', processes: 2, mergingBytes: 12288, profitBytes: 90, savedBytes: undefined },
    ]);
  });

  it('sums fair-share savings, most saved first, and names the cgroups', () => {
    const row = (pid: number, cgroup: string, mergingBytes: number, savedBytes: number): ProcessKsmRow => ({
      pid, command: 'x', cgroup, mergingPages: mergingBytes / 4096, mergingBytes, profitBytes: mergingBytes, savedBytes, methods: ['prctl'],
    });
    const groups = groupByCgroup([row(1, '/system.slice/a.service', 8192, 1000), row(2, '/system.slice/b.service', 4096, 3000), row(3, '/system.slice/a.service', 4096, 1500)]);
    expect(groups.map((group) => [group.name, group.engine, group.savedBytes])).toEqual([
      ['b.service', 'systemd', 3000],
      ['a.service', 'systemd', 2500],
    ]);
  });
});
