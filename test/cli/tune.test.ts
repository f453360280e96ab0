import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { planKnobWrites, parseDuration, validateKnobs } from '../../lib/kernel/tune.js';
import { requireOrSkip, ksmUnavailable } from '../helpers/e2e.js';
import { withKsmd } from '../helpers/ksmd.js';
import { BIN, MODERN_TREE, READ_ONLY_FOR_ROOT, WITH_KSMD, runBin, runInProcess, useFakeSysfs } from './harness.js';

const REAL = '/sys/kernel/mm/ksm';
let cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
  cleanups = [];
});

function fakeTree(tree = MODERN_TREE): string {
  const fake = useFakeSysfs(tree);
  cleanups.push(fake.cleanup);
  return fake.root;
}

function snapshot(root: string): Record<string, string> {
  return Object.fromEntries(readdirSync(root).map((name) => [name, readFileSync(join(root, name), 'utf8').trim()]));
}

function knob(root: string, name: string): string {
  return readFileSync(join(root, name), 'utf8').trim();
}

describe('validation', () => {
  it.each([
    [['--pages-to-scan=-5'], /pages_to_scan must be a whole number/],
    [['--pages-to-scan', '-5'], /argument is ambiguous/],
    [['--pages-to-scan', '12abc'], /pages_to_scan must be a whole number/],
    [['--advisor', 'fast'], /advisor_mode must be one of none, scan-time/],
    [['--sleep-ms', '50', '--max-page-sharing', '1'], /max_page_sharing must be a whole number from 2/],
    [['--use-zero-pages', '2'], /use_zero_pages must be one of 0, 1/],
    [['--advisor', 'scan-time', '--pages-to-scan', '100'], /pages_to_scan cannot be set while advisor_mode is scan-time/],
    [['--frobnicate', '1'], /Unknown option '--frobnicate'/],
    [[], /nothing to tune/],
  ])('%j is a usage error and writes nothing', async (args, message) => {
    const root = fakeTree();
    const before = snapshot(root);
    const result = await runInProcess(['tune', ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^ksm: /);
    expect(result.stderr).toMatch(/Run `ksm tune --help`/);
    expect(snapshot(root)).toEqual(before);
  });

  it('the API throws TypeError/RangeError naming the knob', () => {
    fakeTree();
    expect(() => validateKnobs({ nonsense: 1 } as never)).toThrow(RangeError);
    expect(() => validateKnobs({ run: true } as never)).toThrow(/run must be a number or a string, got boolean/);
    expect(validateKnobs({ pages_to_scan: '0042', run: 1 })).toEqual(new Map([['pages_to_scan', '42'], ['run', '1']]));
  });

  it('reads durations', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('2')).toBe(2000);
    for (const bad of ['', '10x', 'm', '0s', '-1s', '5 m']) expect(() => parseDuration(bad), bad).toThrow(RangeError);
  });
});

describe('write order', () => {
  it('plans advisor off first, run=2 before merge_across_nodes, advisor on after its parameters, run last', () => {
    const current = { run: '1', pages_to_scan: '100', advisor_mode: 'scan-time', merge_across_nodes: '1', advisor_max_cpu: '70' };
    expect(planKnobWrites(new Map([['pages_to_scan', '500'], ['advisor_mode', 'none']]), current)).toEqual([
      ['advisor_mode', 'none'],
      ['pages_to_scan', '500'],
    ]);
    expect(planKnobWrites(new Map([['merge_across_nodes', '0'], ['sleep_millisecs', '5']]), current)).toEqual([
      ['run', '2'],
      ['merge_across_nodes', '0'],
      ['sleep_millisecs', '5'],
      ['run', '1'],
    ]);
    expect(planKnobWrites(new Map([['advisor_mode', 'scan-time'], ['advisor_max_cpu', '30'], ['run', '1']]), { ...current, advisor_mode: 'none', run: '0' })).toEqual([
      ['advisor_max_cpu', '30'],
      ['advisor_mode', 'scan-time'],
      ['run', '1'],
    ]);
    // Unchanged values are not written at all.
    expect(planKnobWrites(new Map([['run', '1']]), current)).toEqual([]);
  });

  it('the real kernel accepts the order: pages_to_scan after switching the advisor off', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    // Kernels before about 6.8 have no advisor: there, only the merge_across_nodes part applies.
    const hasAdvisor = existsSync(join(REAL, 'advisor_mode'));
    await withKsmd(
      async () => {
        if (hasAdvisor) {
          // The reverse order fails: the kernel refuses pages_to_scan under scan-time.
          expect(() => writeFileSync(join(REAL, 'pages_to_scan'), '321')).toThrow(/EINVAL/);
          const result = await runInProcess(['tune', '--advisor', 'none', '--pages-to-scan', '321', '--json']);
          expect(result.stderr).toBe('');
          expect(result.code).toBe(0);
          expect(knob(REAL, 'pages_to_scan')).toBe('321');
          expect(knob(REAL, 'advisor_mode')).toBe('[none] scan-time');
          expect(JSON.parse(result.stdout).changed.pages_to_scan.to).toBe('321');
        }
        const mac = await runInProcess(['tune', '--merge-across-nodes', '0']);
        expect(mac.code).toBe(0);
        expect(knob(REAL, 'merge_across_nodes')).toBe('0');
        expect(knob(REAL, 'run')).toBe('1'); // run=2 for the change, then running again
      },
      hasAdvisor ? { advisor_mode: 'scan-time' } : {},
    );
  });
});

describe('rollback', () => {
  it('puts back what it changed when a later write fails, and exits 1 naming the knob', async () => {
    const root = fakeTree({ ...MODERN_TREE, sleep_millisecs: READ_ONLY_FOR_ROOT });
    const result = await runInProcess(['tune', '--pages-to-scan', '500', '--use-zero-pages', '1', '--sleep-ms', '30']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot write 30 to .*sleep_millisecs/);
    // pages_to_scan was written before sleep_millisecs failed (plan order), then rolled back.
    expect(knob(root, 'pages_to_scan')).toBe('100');
    expect(knob(root, 'use_zero_pages')).toBe('0');
  });

  it('without root: names the knob and the permission, writes nothing', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const before = knob(REAL, 'pages_to_scan');
      const result = runBin(['tune', '--sleep-ms', '33', '--pages-to-scan', '123'], { uid: 65534, gid: 65534 });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/ksm: .*cannot write 123 to \/sys\/kernel\/mm\/ksm\/pages_to_scan: needs root/);
      expect(knob(REAL, 'pages_to_scan')).toBe(before);
      expect(knob(REAL, 'sleep_millisecs')).toBe('10');
    });
  });
});

describe('--boost', () => {
  it('applies the aggressive settings for the duration, then restores them', async () => {
    const root = fakeTree();
    const seen: string[] = [];
    const probe = setTimeout(() => seen.push(knob(root, 'run'), knob(root, 'pages_to_scan'), knob(root, 'sleep_millisecs')), 300);
    const result = await runInProcess(['tune', '--boost', '1s']);
    clearTimeout(probe);
    expect(result.code).toBe(0);
    expect(seen).toEqual(['1', '4000', '10']);
    expect(snapshot(root)).toEqual(MODERN_TREE);
    expect(result.stdout).toMatch(/boost over; restored run=0 pages_to_scan=100 sleep_millisecs=20/);
  });

  it('shows a countdown on a terminal', async () => {
    fakeTree();
    const result = await runInProcess(['tune', '--boost', '1100ms', '--sleep-ms', '15'], { tty: true });
    expect(result.stdout).toMatch(/\rboosted; restoring in 0:02 \(Ctrl-C restores now\)/);
    expect(result.stdout).toMatch(/\rboosted; restoring in 0:01 /);
    expect(result.stdout).toMatch(/boost over; restored run=0 pages_to_scan=100 sleep_millisecs=20\n$/);
  });

  it('restores early on Ctrl-C (spawned, SIGINT)', async () => {
    const root = fakeTree();
    const child = spawn(process.execPath, [BIN, 'tune', '--boost', '10m', '--pages-to-scan', '7777'], { env: process.env });
    let stdout = '';
    let interrupted = false;
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      // Once: a second SIGINT after the command has restored and let go of its
      // handler would kill it, as Ctrl-C twice would.
      if (!interrupted && stdout.includes('boosting')) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
    expect(code).toBe(0);
    expect(stdout).toMatch(/boost ended early; restored run=0 pages_to_scan=100 sleep_millisecs=20/);
    expect(knob(root, 'pages_to_scan')).toBe('100');
  });
});
