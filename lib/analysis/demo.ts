import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeMemory, measureMergedBytes, type MemoryAnalysis } from './analyze.js';
import { KsmError, notSupportedError } from '../core/errors.js';
import { packageRoot } from '../core/addon.js';
import { launcher } from '../core/paths.js';
import { waitUntilIdle } from '../process/idle.js';
import { processKsmStats } from '../process/process-stats.js';
import { systemKsmStats, type SystemKsmStats } from '../kernel/system-stats.js';
import { applyKnobs, BOOST_KNOBS, restoreKnobs, saveKnobs, type KnobSnapshot } from '../kernel/tune.js';

/** How the demo's workers opt in, as the launcher's --mode. */
export type DemoMode = 'auto' | 'prctl' | 'madvise';

/** Options of startDemo() and runDemo(). */
export interface DemoOptions {
  /** Identical worker processes (default 4). */
  workers?: number;
  mode?: DemoMode;
  /** MiB of data each worker builds (default 32). */
  workerMiB?: number;
  /** Longest wait for merging, in milliseconds (default 60 000). */
  timeoutMs?: number;
  /** Ends the demo early; workers are killed and knobs restored all the same. */
  signal?: AbortSignal;
}

/** One look at the demo while ksmd works. */
export interface DemoSample {
  seconds: number;
  /**
   * What KSM saves on the workers: exact as root (their pages mapped to KSM pages
   * minus the distinct KSM pages), else pages_sharing grown since the start.
   */
  savedBytes: number;
  /** What ksmd can reach: the ideal saving among advised pages. */
  idealBytes: number;
  /** Seconds until the saving first reached 90 % of the ideal. */
  secondsTo90: number | undefined;
  /** The demo has seen enough: ideal reached, saving stable, timeout, or nothing can merge. */
  done: boolean;
}

/** One worker at the end of the demo. */
export interface DemoWorkerResult {
  pid: number;
  /** Its pages merged by KSM (ksm_merging_pages). */
  mergingBytes: number | undefined;
  /** Anonymous memory advised mergeable ÷ all anonymous memory. */
  coverage: number | undefined;
}

/** What runDemo() and DemoSession.finish() report; --json prints it. */
export interface DemoResult {
  mode: DemoMode;
  workers: number;
  /** Whether ksmd merged during the demo, and if not, what is needed to see it. */
  merging: { possible: true } | { possible: false; needed: string };
  /** The ideal saving among advised pages: what ksmd can reach. */
  idealBytes: number;
  /** The ideal saving if every anonymous page were advised. */
  idealAllBytes: number;
  savedBytes: number;
  /** savedBytes ÷ idealBytes (0 when the ideal is 0). */
  fractionOfIdeal: number;
  /** savedBytes minus the kernel's bookkeeping for the workers (64 bytes per tracked page). */
  profitBytes: number;
  /** From the start of merging to the end of the demo. */
  seconds: number;
  secondsTo90: number | undefined;
  coverage: number;
  /** How fast analyzeMemory() read the workers, bytes per second. */
  analyzeBytesPerSecond: number;
  perWorker: DemoWorkerResult[];
}

const DEFAULT_WORKERS = 4;
const DEFAULT_WORKER_MIB = 32;
const DEFAULT_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 30_000;
/** Close enough to the ideal to stop watching. */
const ENOUGH_OF_IDEAL = 0.98;
/** What the kernel spends per page it tracks for merging (struct ksm_rmap_item, 64-bit). */
const RMAP_ITEM_BYTES = 64;
/** The saving counts as settled after this many full scans without growth. */
const STABLE_FULL_SCANS = 3;

/** The worker program: compiled next to this module; in tests (lib/*.ts) the built copy. */
function workerScript(): string {
  const candidates = [join(__dirname, 'demo-worker.js'), join(packageRoot, 'dist', 'cjs', 'analysis', 'demo-worker.js')];
  const found = candidates.find((file) => existsSync(file));
  if (!found) throw notSupportedError('runDemo', `the demo worker was not built (looked in ${candidates.join(', ')}); run \`npm run build\``);
  return found;
}

function validateOptions(options: DemoOptions): Required<Omit<DemoOptions, 'signal'>> {
  const workers = options.workers ?? DEFAULT_WORKERS;
  const mode = options.mode ?? 'auto';
  const workerMiB = options.workerMiB ?? DEFAULT_WORKER_MIB;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(workers) || workers < 2 || workers > 64) throw new RangeError(`workers must be a whole number from 2 to 64, got ${workers}`);
  if (!['auto', 'prctl', 'madvise'].includes(mode)) throw new RangeError(`mode must be auto, prctl or madvise, got ${JSON.stringify(mode)}`);
  if (!Number.isInteger(workerMiB) || workerMiB < 1 || workerMiB > 4096) throw new RangeError(`workerMiB must be a whole number from 1 to 4096, got ${workerMiB}`);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
  return { workers, mode, workerMiB, timeoutMs };
}

/**
 * Why ksmd cannot merge during the demo, or undefined when it can: it runs
 * already, or this process may start it.
 */
function mergingBlocker(stats: SystemKsmStats): string | undefined {
  if (!stats.available) return `this kernel has no KSM (${stats.root} is missing): it needs a kernel built with CONFIG_KSM`;
  if (stats.running) return undefined;
  if (process.getuid?.() !== 0) {
    return 'ksmd is stopped (run=0) and only root can start it: run `sudo npx ksm demo`, or start ksmd with `sudo ksm enable` first';
  }
  return undefined;
}

/**
 * A running demo: N identical workers under the preload library, and ksmd tuned
 * fast. Call sample() to follow it and finish() (always, e.g. in finally) to get the
 * result, kill the workers and restore every knob.
 */
export class DemoSession {
  private readonly started = Date.now();
  /** The latest saving seen, and full_scans when it was seen and when it last grew. */
  private lastSaved = 0;
  private fullScansSeen: number;
  private fullScansAtGrowth: number;
  private measuring: Promise<void> | undefined;
  private exactPossible = true;
  private reached90: number | undefined;
  private finished = false;

  private constructor(
    readonly mode: DemoMode,
    private readonly children: ChildProcess[],
    readonly analysis: MemoryAnalysis,
    /** The counters before ksmd was started: the saving is what grew since. */
    private readonly baseline: SystemKsmStats,
    private readonly snapshot: KnobSnapshot | undefined,
    private readonly blocker: string | undefined,
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.fullScansSeen = this.fullScansAtGrowth = this.baseline.counters.full_scans ?? 0;
  }

  /**
   * Starts the workers, analyses them, and (as root) turns ksmd on with fast
   * settings. On failure everything started is stopped and restored again.
   */
  static async start(options: DemoOptions = {}): Promise<DemoSession> {
    const { workers, mode, workerMiB, timeoutMs } = validateOptions(options);
    const exec = launcher();
    if (exec.path === undefined) throw notSupportedError('runDemo', exec.reason);
    const script = workerScript();
    const children: ChildProcess[] = [];
    let snapshot: KnobSnapshot | undefined;
    try {
      for (let i = 0; i < workers; i++) {
        children.push(spawn(exec.path, ['--mode', mode, '--', process.execPath, script, String(workerMiB), '42'], { stdio: ['ignore', 'pipe', 'pipe'] }));
      }
      await Promise.all(children.map((child) => waitReady(child, options.signal)));
      const pids = children.map((child) => child.pid ?? 0);
      await waitUntilIdle(pids);
      const analysis = await analyzeMemory(pids);
      const before = systemKsmStats();
      let blocker = mergingBlocker(before);
      if (blocker === undefined && !before.running) {
        snapshot = saveKnobs();
        try {
          applyKnobs({ ...BOOST_KNOBS, ...(before.knobs.advisor_mode === 'scan-time' ? { advisor_mode: 'none' } : {}) });
        } catch (error) {
          if (!(error instanceof KsmError)) throw error;
          blocker = `cannot start ksmd: ${error.message} (in a container, run the demo on the host)`;
        }
      }
      return new DemoSession(mode, children, analysis, before, snapshot, blocker, timeoutMs, options.signal);
    } catch (error) {
      await stopWorkers(children);
      if (snapshot) restoreKnobs(snapshot);
      throw error;
    }
  }

  /** The saving now, and whether the demo has seen enough. */
  sample(): DemoSample {
    const stats = systemKsmStats();
    const seconds = (Date.now() - this.started) / 1000;
    this.startMeasuring(stats.counters.full_scans ?? 0);
    if (!this.exactPossible) this.observe(this.sharingGrowth(stats), stats.counters.full_scans ?? 0);
    const savedBytes = this.lastSaved;
    const idealBytes = this.analysis.idealAdvisedBytes;
    if (this.reached90 === undefined && idealBytes > 0 && savedBytes >= 0.9 * idealBytes) this.reached90 = seconds;
    // Settled: something merged, then nothing more over a few full scans.
    const settled = savedBytes > 0 && this.fullScansSeen - this.fullScansAtGrowth >= STABLE_FULL_SCANS;
    const done =
      this.blocker !== undefined ||
      this.signal?.aborted === true ||
      seconds * 1000 >= this.timeoutMs ||
      idealBytes === 0 ||
      savedBytes >= ENOUGH_OF_IDEAL * idealBytes ||
      settled;
    return { seconds, savedBytes, idealBytes, secondsTo90: this.reached90, done };
  }

  private observe(savedBytes: number, fullScans: number): void {
    if (savedBytes > this.lastSaved) this.fullScansAtGrowth = fullScans;
    this.lastSaved = savedBytes;
    this.fullScansSeen = fullScans;
  }

  /**
   * Measures the workers' own saving in the background, so that sample() stays
   * synchronous and cheap; each sample shows the latest measurement. `fullScans`
   * is ksmd's count when the measurement began.
   */
  private startMeasuring(fullScans: number): void {
    if (this.measuring || !this.exactPossible || this.finished) return;
    this.measuring = measureMergedBytes(this.pids())
      .then((bytes) => {
        if (bytes === undefined) this.exactPossible = false;
        else this.observe(bytes, fullScans);
      })
      .catch(() => {
        this.exactPossible = false;
      })
      .finally(() => {
        this.measuring = undefined;
      });
  }

  /** Without root: pages_sharing grown since the start, which counts other processes merging meanwhile too. */
  private sharingGrowth(stats: SystemKsmStats): number {
    return Math.max(0, (stats.counters.pages_sharing ?? 0) - (this.baseline.counters.pages_sharing ?? 0)) * stats.pageSize;
  }

  /**
   * The saving minus what the kernel spends tracking the workers' pages (64 bytes per
   * rmap_item, as general_profit counts it); general_profit grown since the start
   * where ksm_stat is missing.
   */
  private profit(savedBytes: number, workers: readonly WorkerStats[]): number {
    if (workers.every((w) => w.rmapItems !== undefined)) {
      return savedBytes - workers.reduce((sum, w) => sum + (w.rmapItems ?? 0), 0) * RMAP_ITEM_BYTES;
    }
    return (systemKsmStats().profitBytes ?? 0) - (this.baseline.profitBytes ?? 0);
  }

  private pids(): number[] {
    return this.children.map((child) => child.pid ?? 0);
  }

  /** The result; kills the workers and restores every knob, also when reading fails. */
  async finish(): Promise<DemoResult> {
    if (this.finished) throw new Error('DemoSession.finish() was already called');
    this.finished = true;
    try {
      await this.measuring;
      const exact = this.exactPossible ? await measureMergedBytes(this.pids()).catch(() => undefined) : undefined;
      const last = this.sample();
      const savedBytes = exact ?? last.savedBytes;
      const workers = this.pids().map((pid) => workerStats(pid));
      const idealBytes = this.analysis.idealAdvisedBytes;
      return {
        mode: this.mode,
        workers: this.children.length,
        merging: this.blocker === undefined ? { possible: true } : { possible: false, needed: this.blocker },
        idealBytes,
        idealAllBytes: this.analysis.ideal.bytes,
        savedBytes,
        fractionOfIdeal: idealBytes > 0 ? savedBytes / idealBytes : 0,
        profitBytes: this.profit(savedBytes, workers),
        seconds: last.seconds,
        secondsTo90: last.secondsTo90,
        coverage: this.analysis.coverage,
        analyzeBytesPerSecond: this.analysis.bytesPerSecond,
        perWorker: workers.map(({ pid, mergingBytes, coverage }) => ({ pid, mergingBytes, coverage })),
      };
    } finally {
      await stopWorkers(this.children);
      if (this.snapshot) restoreKnobs(this.snapshot);
    }
  }
}

type WorkerStats = DemoWorkerResult & { rmapItems: number | undefined };

function workerStats(pid: number): WorkerStats {
  try {
    const stats = processKsmStats(pid);
    if (stats.supported) return { pid, mergingBytes: stats.mergingBytes, coverage: stats.coverage?.ratio, rmapItems: stats.rmapItems };
  } catch {
    // The worker is gone: its figures are unknown.
  }
  return { pid, mergingBytes: undefined, coverage: undefined, rmapItems: undefined };
}

/** Resolves when the worker printed "ready"; rejects with its stderr when it exits first. */
function waitReady(child: ChildProcess, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    let errors = '';
    const fail = (why: string): void => {
      cleanup();
      reject(new Error(`demo worker ${child.pid ?? '(not started)'} ${why}${errors ? `: ${errors.trim()}` : ''}`));
    };
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('ready')) {
        cleanup();
        resolve();
      }
    };
    const onError = (chunk: Buffer): void => {
      errors += chunk.toString();
    };
    const onExit = (code: number | null, signalName: string | null): void => fail(`exited (${signalName ?? `code ${code}`}) before it was ready`);
    const onSpawnError = (error: Error): void => fail(`could not start: ${error.message}`);
    const onAbort = (): void => fail('was stopped: the demo was cancelled');
    const timer = setTimeout(() => fail(`was not ready after ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData).resume();
      child.stderr?.off('data', onError).resume();
      child.off('exit', onExit).off('error', onSpawnError);
      signal?.removeEventListener('abort', onAbort);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onError);
    child.on('exit', onExit).on('error', onSpawnError);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
  });
}

/** SIGKILL every worker still running and wait until each is gone. */
async function stopWorkers(children: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/**
 * Runs the whole demo: starts the workers, waits until KSM merged about the ideal
 * (or the saving settles, or the timeout passes), then kills the workers and restores
 * the knobs. `onSample` sees each look at the saving.
 */
export async function runDemo(options: DemoOptions & { onSample?: (sample: DemoSample) => void; intervalMs?: number } = {}): Promise<DemoResult> {
  const session = await DemoSession.start(options);
  let result: DemoResult | undefined;
  try {
    for (;;) {
      const sample = session.sample();
      options.onSample?.(sample);
      if (sample.done) break;
      await delay(options.intervalMs ?? 250, options.signal);
    }
  } finally {
    result = await session.finish();
  }
  return result;
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
