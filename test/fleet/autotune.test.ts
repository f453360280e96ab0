// `ksm autotune` as its own process against the real ksmd, under the machine-wide
// KSM lock of withKsmd(). Real workers offer identical pages; what the daemon
// decides is read from its --json lines and checked against the kernel's knobs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AutotuneLogEntry } from '../../lib/fleet/autotune.js';
import { autotuneUnitText } from '../../lib/fleet/autotune-unit.js';
import { ksmdCpuSeconds } from '../../lib/fleet/ksmd-cpu.js';
import { applyKnobs, saveKnobs, type KnobSnapshot } from '../../lib/kernel/tune.js';
import { BIN, runBin, WITH_KSMD } from '../cli/harness.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { readKsmCounter, waitFor, withKsmd } from '../helpers/ksmd.js';
import { requireTool } from '../helpers/tools.js';
import { removeWorkerBinary, startWorker, stopWorkers, type Worker } from './workers.js';

const PAGES = 8192;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'ksm-autotune-'));
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  removeWorkerBinary();
});

/** A running `ksm autotune --json`, its decisions as they arrive. */
interface Daemon {
  child: ChildProcess;
  decisions: AutotuneLogEntry[];
  stderr: () => string;
  /** Waits for a decision matching `test`; fails the test with what was seen when none comes. */
  next(test: (entry: AutotuneLogEntry) => boolean, timeoutMs: number): Promise<AutotuneLogEntry>;
  stop(signal: NodeJS.Signals): Promise<number | null>;
}

function startAutotune(args: string[]): Daemon {
  const child = spawn(process.execPath, [BIN, 'autotune', '--json', '--threshold-percent', '100', '--interval', '1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KSM_AUTOTUNE_LOG: join(work, 'unused.jsonl') },
  });
  const decisions: AutotuneLogEntry[] = [];
  let stderr = '';
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line) decisions.push(JSON.parse(line) as AutotuneLogEntry);
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return {
    child,
    decisions,
    stderr: () => stderr,
    async next(test, timeoutMs) {
      const found = (): AutotuneLogEntry | undefined => decisions.find(test);
      if (!(await waitFor(() => found() !== undefined || child.exitCode !== null, timeoutMs, 200)) || !found()) {
        throw new Error(`no such decision in ${timeoutMs} ms; saw:\n${decisions.map((d) => `${d.action}: ${d.reason}`).join('\n')}\nstderr: ${stderr}`);
      }
      return found() as AutotuneLogEntry;
    },
    async stop(signal) {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** ksmd stopped with nothing merged (inside withKsmd, which restores it): what autotune then does is its own doing. */
function quietKsmd(): void {
  applyKnobs({ run: 2 });
  applyKnobs({ run: 0 });
}

async function workers(count: number): Promise<Worker[]> {
  quietKsmd();
  const started: Worker[] = [];
  for (let i = 0; i < count; i++) started.push(await startWorker(PAGES, 'prctl'));
  return started;
}

const mergingPages = (pids: number[]): number => pids.reduce((sum, pid) => sum + Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8')), 0);

describe('ksm autotune against the real ksmd', () => {
  it('boosts while the workers\' pages wait, relaxes, then stops with run=0 and the pages still merged', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const started = await workers(3);
      const daemon = startAutotune(['--relax-scan-time', '5']);
      try {
        const boost = await daemon.next((d) => d.action === 'boost', 15_000);
        expect(boost.reason).toMatch(/not scanned yet/);
        expect(boost.knobs.run).toBe(1);
        // The kernel holds what the decision says.
        const kernel = saveKnobs();
        for (const [knob, value] of Object.entries(boost.knobs)) {
          if (knob !== 'advisor_min_pages_to_scan') expect.soft(kernel[knob as keyof KnobSnapshot], knob).toBe(String(value));
        }
        // A relax that holds the pace to the CPU budget may come first: the one that counts
        // says the scan has caught up.
        const caughtUp = /nothing more waits|scanned before/;
        const relax = await daemon.next((d) => d.action === 'relax' && caughtUp.test(d.reason), 60_000);
        expect(relax.reason).toMatch(caughtUp);
        const stop = await daemon.next((d) => d.action === 'stop', 60_000);
        expect(stop.reason).toMatch(/profit stopped growing/);
        expect(stop.knobs).toEqual({ run: 0 });
        expect(saveKnobs().run).toBe('0');
        // run=0, not 2: the workers' pages stay merged (two of three copies saved).
        const pids = started.map((w) => w.pid);
        expect(mergingPages(pids)).toBeGreaterThan(PAGES * 3 * 0.9);
        expect(readKsmCounter('pages_sharing')).toBeGreaterThan(PAGES * 2 * 0.9);
        const order = [boost, relax, stop].map((d) => daemon.decisions.indexOf(d));
        expect(order).toEqual([...order].sort((a, b) => a - b));
      } finally {
        await daemon.stop('SIGTERM');
        await stopWorkers(started);
      }
    });
  });

  it('keeps ksmd within a tiny --max-cpu on average, measured from ksmd\'s own /proc stat', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const started = await workers(4);
      const budget = 3;
      const before = ksmdCpuSeconds() ?? 0;
      const startedAt = Date.now();
      const daemon = startAutotune(['--max-cpu', String(budget), '--boost-scan-time', '1']);
      try {
        await daemon.next((d) => d.action === 'boost', 15_000);
        await new Promise((done) => setTimeout(done, 15_000));
      } finally {
        await daemon.stop('SIGTERM');
        await stopWorkers(started);
      }
      const seconds = (Date.now() - startedAt) / 1000;
      const used = (ksmdCpuSeconds() ?? 0) - before;
      // One clock tick (10 ms) of slack for the reading's granularity.
      expect(used).toBeLessThanOrEqual((budget / 100) * seconds + 0.01);
      // The budget bit: 1 s per full scan of 4 workers would take far more.
      expect(daemon.decisions.some((d) => /budget/.test(d.reason))).toBe(true);
      expect(used).toBeGreaterThan(0);
    });
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`puts every knob back on ${signal}`, WITH_KSMD, async (ctx) => {
      requireOrSkip(ctx, ksmUnavailable());
      await withKsmd(async () => {
        const started = await workers(2);
        const before = saveKnobs();
        const daemon = startAutotune(['--max-cpu', '7']);
        try {
          const boost = await daemon.next((d) => d.action === 'boost', 15_000);
          // It did change the kernel's knobs, so putting them back means something.
          expect(saveKnobs()).not.toEqual(before);
          expect(boost.knobs).toBeDefined();
          expect(await daemon.stop(signal)).toBe(0);
          expect(saveKnobs()).toEqual(before);
          expect(daemon.decisions.at(-1)?.action).toBe('restore');
        } finally {
          await daemon.stop('SIGKILL');
          await stopWorkers(started);
        }
      });
    });
  }

  it('--dry-run decides and logs but writes no knob and no state file', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      const started = await workers(2);
      const before = saveKnobs();
      const state = join(work, 'dry-run.jsonl');
      const child = spawn(process.execPath, [BIN, 'autotune', '--dry-run', '--threshold-percent', '100', '--interval', '1'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, KSM_AUTOTUNE_LOG: '' },
      });
      let stdout = '';
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      try {
        expect(await waitFor(() => /boost:/.test(stdout), 15_000, 200)).toBe(true);
        await new Promise((done) => setTimeout(done, 2500));
        expect(saveKnobs()).toEqual(before);
      } finally {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        await exited;
        await stopWorkers(started);
      }
      // The decision wanted other knobs than the kernel has: a write would have shown.
      const wanted = /^\[dry run\] boost: .*\[(.*)\]$/m.exec(stdout)?.[1] ?? '';
      expect(wanted.split(' ').some((pair) => { const [knob, value] = pair.split('='); return before[knob as keyof KnobSnapshot] !== value; })).toBe(true);
      expect(stdout).not.toMatch(/restore:/);
      expect(existsSync(state)).toBe(false);
      expect(saveKnobs()).toEqual(before);
    });
  });
});

describe('ksm autotune --install', () => {
  it('writes the unit atomically where asked, with the options in ExecStart, and systemd-analyze verify accepts it', (ctx) => {
    requireTool(ctx, 'systemd-analyze');
    const dir = join(work, 'units');
    rmSync(dir, { recursive: true, force: true });
    // Nothing is written unless asked.
    expect(runBin(['autotune', '--prefix', dir]).code).toBe(2);
    expect(existsSync(dir)).toBe(false);
    mkdirSync(dir);
    const result = runBin(['autotune', '--install', '--prefix', dir, '--max-cpu', '10', '--interval', '3']);
    expect(result.code, result.stderr).toBe(0);
    const file = join(dir, 'ksm-autotune.service');
    expect(result.stdout).toContain(`wrote ${file}`);
    expect(readdirSync(dir)).toEqual(['ksm-autotune.service']);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/env ksm autotune --interval 3 --max-cpu 10$/m);
    expect(text).toMatch(/^Type=simple$/m);
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(/^ReadWritePaths=\/sys\/kernel\/mm\/ksm$/m);
    expect(text).not.toMatch(/^ProtectKernelTunables=/m);
    const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
  });

  it('the repository\'s deploy/systemd/ksm-autotune.service is the unit --install writes, and verifies', (ctx) => {
    requireTool(ctx, 'systemd-analyze');
    const file = resolve(__dirname, '../../deploy/systemd/ksm-autotune.service');
    expect(readFileSync(file, 'utf8')).toBe(autotuneUnitText());
    const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
  });

  it('refuses options systemd would expand', () => {
    expect(() => autotuneUnitText(['--state', '/run/%n.jsonl'])).toThrow(RangeError);
    expect(() => autotuneUnitText(['--state', '$HOME/x'])).toThrow(RangeError);
  });
});
