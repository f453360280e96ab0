import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { systemKsmStats } from '../../lib/kernel/system-stats.js';
import { requireOrSkip, ksmUnavailable, prctlUnavailable } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { BIN, MODERN_TREE, WITH_KSMD, runBin, runInProcess, useFakeSysfs } from './harness.js';

const REAL = '/sys/kernel/mm/ksm';
const HOLD_8_MIB = "import time\nb = bytearray(b'\\x05') * (8 << 20)\nprint('ready', flush=True)\ntime.sleep(600)";

function readRealTree(): Record<string, string> {
  return Object.fromEntries(readdirSync(REAL).map((name) => [name, readFileSync(`${REAL}/${name}`, 'utf8').trim()]));
}

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

describe('ksm status --json', () => {
  it('equals what sysfs says at the same moment (in-process and spawned)', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = readRealTree();
      const inProcess = await runInProcess(['status', '--json']);
      const spawned = runBin(['status', '--json']);
      const after = readRealTree();
      if (JSON.stringify(before) !== JSON.stringify(after)) continue; // ksmd moved meanwhile: sample again
      for (const result of [inProcess, spawned]) {
        expect(result.code).toBe(0);
        const json = JSON.parse(result.stdout);
        for (const [name, raw] of Object.entries(before)) {
          if (/^-?\d+$/.test(raw) && name in json.counters) expect(json.counters[name], name).toBe(Number(raw));
          else expect(json.knobs[name], name).toBe(/\[(\S+)\]/.exec(raw)?.[1] ?? raw);
        }
        expect(Object.keys(json.counters).length + Object.keys(json.knobs).length).toBe(Object.keys(before).length);
        const pageSize = json.pageSize as number;
        expect(json.savedBytes).toBe(Number(before.pages_sharing) * pageSize);
        // Kernels before 6.4 have no general_profit: the profit is then an estimate.
        if ('general_profit' in before) expect(json.profitBytes).toBe(Number(before.general_profit));
        else expect(json.profitSource).toBe('estimate');
        expect(json.running).toBe(before.run === '1');
      }
      return;
    }
    throw new Error('sysfs never held still for one sample');
  });
});

describe('ksm status with ksmd merging a real process', () => {
  const COMPARED = ['pages_sharing', 'pages_shared', 'general_profit', 'pages_unshared', 'pages_volatile', 'ksm_zero_pages', 'run'];
  it('reports the live counters, profit and warnings', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    const holder = spawn(process.execPath, [BIN, 'run', '--', '/usr/bin/python3', '-c', HOLD_8_MIB], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => holder.stdout.once('data', resolve));
      await withKsmd(async () => {
        expect(await waitFor(() => Number(readFileSync(`${REAL}/pages_sharing`, 'utf8')) >= 2000, 30_000)).toBe(true);
        // Merged: a long pause between ksmd's batches holds the counters still while the
        // command samples them, and ksmd still counts as running (withKsmd restores the knob).
        writeFileSync(`${REAL}/sleep_millisecs`, '60000');
        await new Promise((resolve) => setTimeout(resolve, 500));
        for (let attempt = 0; attempt < 20; attempt++) {
          const before = readRealTree();
          const json = JSON.parse((await runInProcess(['status', '--json'])).stdout);
          // ksmd scanning moves pages_scanned and full_scans all the time (slowly, under
          // QEMU): only the counters compared here must hold still during the sample.
          const after = readRealTree();
          if (COMPARED.some((name) => before[name] !== after[name])) continue;
          expect(json.counters.pages_sharing).toBe(Number(before.pages_sharing));
          expect(json.savedBytes).toBe(Number(before.pages_sharing) * json.pageSize);
          expect(json.sharingRatio).toBe(Number(before.pages_sharing) / Number(before.pages_shared));
          if ('general_profit' in before) expect(json.profitBytes).toBe(Number(before.general_profit));
          else expect(json.profitSource).toBe('estimate');
          expect(json.running).toBe(true);
          expect(json.warnings.map((w: { code: string }) => w.code)).not.toContain('no-opt-in');
          return;
        }
        throw new Error('sysfs never held still for one sample');
      });
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('ksm status against fake sysfs trees', () => {
  it('reports MiB, the ratio and a negative profit', async () => {
    cleanup = useFakeSysfs({ ...MODERN_TREE, run: '1', pages_shared: '256', pages_sharing: '2560', pages_unshared: '100', general_profit: '-123456' }).cleanup;
    const json = JSON.parse((await runInProcess(['status', '--json'])).stdout);
    expect(json.savedBytes).toBe(2560 * json.pageSize);
    expect(json.sharingRatio).toBe(10);
    expect(json.profitBytes).toBe(-123456);
    expect(json.profitSource).toBe('kernel');
    const text = await runInProcess(['status']);
    expect(text.stdout).toMatch(/saved:\s+10\.0 MiB/);
    expect(text.stdout).toMatch(/profit:\s+-0\.1 MiB/);
    expect(text.stdout).toMatch(/10\.00 mappings per shared page/);
    expect(text.stdout).not.toMatch(/ksmd is not running/);
  });

  it('handles an old kernel: missing files are absent, profit is estimated, nothing crashes', async () => {
    const old: Record<string, string> = { ...MODERN_TREE, run: '1', pages_shared: '10', pages_sharing: '1000', pages_unshared: '50', pages_volatile: '40' };
    for (const missing of ['general_profit', 'ksm_zero_pages', 'smart_scan', 'advisor_mode', 'advisor_max_cpu', 'advisor_target_scan_time', 'advisor_min_pages_to_scan', 'advisor_max_pages_to_scan', 'pages_skipped']) {
      delete old[missing];
    }
    cleanup = useFakeSysfs(old).cleanup;
    const stats = systemKsmStats();
    expect(stats.counters.general_profit).toBeUndefined();
    expect('advisor_mode' in stats.knobs).toBe(false);
    expect(stats.profitSource).toBe('estimate');
    // The estimate of general_profit: (pages_sharing + zero pages) × page size − (sharing + shared + unshared + volatile) × 64
    expect(stats.profitBytes).toBe(1000 * stats.pageSize - (1000 + 10 + 50 + 40) * 64);
    expect(stats.estimatedFullScanSeconds).toBeCloseTo((Math.ceil(1100 / 100) * 20) / 1000);
    const text = await runInProcess(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/estimated: this kernel has no general_profit/);
    expect(text.stdout).not.toMatch(/zero pages/);
  });

  it('says KSM is missing when the folder is absent', async () => {
    const fake = useFakeSysfs({});
    cleanup = fake.cleanup;
    process.env.KSM_SYSFS_ROOT = `${fake.root}/absent`;
    const result = await runInProcess(['status']);
    expect(result.stdout).toMatch(/KSM is not available/);
    expect(result.stdout).toMatch(/CONFIG_KSM=y/);
  });

  it('warns when ksmd is stopped', async () => {
    cleanup = useFakeSysfs(MODERN_TREE).cleanup;
    const json = JSON.parse((await runInProcess(['status', '--json'])).stdout);
    expect(json.warnings.map((w: { code: string }) => w.code)).toContain('ksmd-stopped');
  });
});

describe('ksm status --watch', () => {
  it('prints one line per sample when stdout is not a terminal, and stops on abort', async () => {
    cleanup = useFakeSysfs({ ...MODERN_TREE, run: '1', pages_shared: '1', pages_sharing: '256' }).cleanup;
    const controller = new AbortController();
    setTimeout(() => controller.abort('SIGINT'), 450);
    const result = await runInProcess(['status', '--watch', '0.1'], { signal: controller.signal });
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).toMatch(/^\S+Z run=1 saved=1\.0 MiB .*full_scans=0$/);
  });

  it('prints one JSON object per line with --json', async () => {
    cleanup = useFakeSysfs(MODERN_TREE).cleanup;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 350);
    const result = await runInProcess(['status', '--watch', '0.1', '--json'], { signal: controller.signal });
    const objects = result.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(objects.length).toBeGreaterThanOrEqual(2);
    expect(objects[0].knobs.pages_to_scan).toBe('100');
    expect(typeof objects[0].time).toBe('string');
  });

  it('redraws in place with a sparkline on a terminal', async () => {
    const fake = useFakeSysfs({ ...MODERN_TREE, run: '1', pages_shared: '1', pages_sharing: '256' });
    cleanup = fake.cleanup;
    const controller = new AbortController();
    const growing = setInterval(() => {
      const file = `${fake.root}/pages_sharing`;
      writeFileSync(file, String(Number(readFileSync(file, 'utf8')) + 256));
    }, 60);
    setTimeout(() => controller.abort(), 500);
    const result = await runInProcess(['status', '--watch', '0.1'], { tty: true, signal: controller.signal });
    clearInterval(growing);
    expect(result.stdout).toMatch(/\x1b\[\d+A/); // cursor moved up to redraw
    const sparklines = [...result.stdout.matchAll(/saved ([▁▂▃▄▅▆▇█]+) /g)].map((match) => match[1] ?? '');
    expect(sparklines.length).toBeGreaterThanOrEqual(3);
    expect(sparklines.at(-1)?.length).toBe(sparklines.length);
    expect(sparklines.at(-1)).toMatch(/^▁.*█$/);
    expect(result.stdout.endsWith('\x1b[?25h')).toBe(true); // cursor shown again
  });

  it('refuses a bad interval as a usage error', async () => {
    const result = await runInProcess(['status', '--watch', 'fast']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^ksm: --watch takes an interval/);
    expect(result.stderr).toMatch(/ksm status --help/);
  });
});
