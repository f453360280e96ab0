import { spawn, spawnSync } from 'node:child_process';
import { launcher, preloadLibrary } from '../../../lib/core/paths.js';
import { coverage, readSmaps, type SmapsMapping } from '../../helpers/smaps.js';

export type Mode = 'off' | 'madvise' | 'prctl';
export const MODES: Mode[] = ['off', 'madvise', 'prctl'];

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  cwd?: string;
  /** Killed with SIGKILL after this long; the result says timedOut. */
  timeoutMs?: number;
}

/** The built library; a missing build fails the test with the reason. */
export function libraryPath(): string {
  const built = preloadLibrary();
  if (!built.path) throw new Error(`libksm_preload.so is not built: ${built.reason}`);
  return built.path;
}

export function ksmExecPath(): string {
  const built = launcher();
  if (!built.path) throw new Error(`ksm-exec is not built: ${built.reason}`);
  return built.path;
}

/** The environment without anything of ours or another preload, so "off" really is off. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'LD_PRELOAD' || key.startsWith('KSM_') || key === 'KSMP_MERGE_THRESHOLD') continue;
    if (key === 'NODE_OPTIONS' || key.startsWith('VITEST') || key === 'TEST') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** The environment of a run in `mode`: the library preloaded, or nothing at all for "off". */
export function modeEnv(mode: Mode, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  if (mode === 'off') return cleanEnv(extra);
  return cleanEnv({ LD_PRELOAD: libraryPath(), KSM_PRELOAD_MODE: mode, ...extra });
}

/** Runs a command to completion, bounded: a hang becomes timedOut, never a stuck suite. */
export function run(command: string, args: string[], options: RunOptions = {}): RunResult {
  const result = spawnSync(command, args, {
    env: options.env ?? cleanEnv(),
    input: options.input,
    cwd: options.cwd,
    timeout: options.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.error && (result.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw result.error;
  return {
    status: result.status,
    signal: result.signal,
    stdout: result.stdout ?? Buffer.alloc(0),
    stderr: result.stderr ?? Buffer.alloc(0),
    timedOut: (result.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT',
  };
}

/** A one-line account of a failed run, for assertion messages. */
export function explain(result: RunResult): string {
  const how = result.timedOut ? 'timed out' : result.signal ? `killed by ${result.signal}` : `exit ${result.status}`;
  return `${how}; stderr: ${result.stderr.toString().slice(-2000)}`;
}

export interface HeldRun extends RunResult {
  /** Coverage and VMA count read from /proc/PID/smaps while the program held its memory. */
  held: ReturnType<typeof coverage> & { pid: number; mappings: SmapsMapping[] };
}

const HOLD_MARKER = 'RELIABILITY_HOLD\n';

export interface HoldOptions extends RunOptions {
  /** What the program prints once its memory is in place; RELIABILITY_HOLD by default. */
  marker?: string;
  /** Where it prints the marker: stderr by default, stdout for the workloads (`ready`). */
  markerOn?: 'stdout' | 'stderr';
}

/**
 * Runs a fixture with RELIABILITY_HOLD=1 (or any program that prints `marker`
 * and then waits for its stdin to close), reads its smaps at that point, then
 * lets it finish.
 */
export function runHeld(command: string, args: string[], options: HoldOptions = {}): Promise<HeldRun> {
  const marker = options.marker ?? HOLD_MARKER;
  const markerOn = options.markerOn ?? 'stderr';
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...(options.env ?? cleanEnv()), RELIABILITY_HOLD: '1' },
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let held: HeldRun['held'] | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 60_000);
    const holdOnMarker = () => {
      const watched = markerOn === 'stdout' ? stdout : stderr;
      if (held === undefined && Buffer.concat(watched).toString().includes(marker) && child.pid !== undefined) {
        try {
          held = { ...coverage(child.pid), pid: child.pid, mappings: readSmaps(child.pid) };
        } catch (error) {
          reject(error as Error);
        }
        child.stdin.end();
      }
    };
    child.stdout.on('data', (chunk: Buffer) => {
      stdout.push(chunk);
      holdOnMarker();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr.push(chunk);
      holdOnMarker();
    });
    child.stdin.on('error', () => undefined);
    if (options.input !== undefined) child.stdin.write(options.input);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (!held) {
        reject(new Error(`${command} ended before holding (${timedOut ? 'timed out' : `exit ${status}`}): ${Buffer.concat(stderr).toString().slice(-2000)}`));
        return;
      }
      resolve({ status, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), timedOut, held });
    });
  });
}

/** Percent with one decimal, for the numbers the suite prints. */
export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)} %`;
}
