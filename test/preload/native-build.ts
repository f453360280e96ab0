import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { basename, join } from 'node:path';
import { buildCached, buildLauncher as buildSharedLauncher, buildPreloadLibrary, repoRoot } from '../helpers/native-build.js';
import { coverage } from '../helpers/smaps.js';

export { repoRoot } from '../helpers/native-build.js';
export const fixturesDir = join(repoRoot, 'test', 'fixtures', 'preload');

export interface Toolchain {
  cc?: 'gcc' | 'clang' | 'musl-gcc';
  opt?: '-O0' | '-O1' | '-O2' | '-O3';
}

/** libksm_preload.so built with the given compiler and optimisation level, warnings as errors. */
export function buildLibrary({ cc = 'gcc', opt = '-O2' }: Toolchain = {}): string {
  return buildPreloadLibrary({ compiler: cc, flags: [opt, '-Werror'] });
}

/** ksm-exec next to a copy of the library, as node-gyp lays them out. */
export function buildLauncher(): string {
  return buildSharedLauncher(buildLibrary());
}

/** The workload programs of every test and benchmark; their protocol is in its README.md. */
export const workloadsDir = join(repoRoot, 'test', 'fixtures', 'workloads');

function buildProgram(source: string, { cc = 'gcc', opt = '-O2' }: Toolchain, extra: string[]): string {
  const name = basename(source, '.c');
  return buildCached(`${name}-${cc}${opt}`, { compiler: cc, sources: [source], flags: ['-std=gnu11', opt, '-Wall', '-pthread'], libs: extra });
}

/** A C program from test/fixtures/preload. */
export function buildFixture(name: string, toolchain: Toolchain = {}, extra: string[] = []): string {
  return buildProgram(join(fixturesDir, `${name}.c`), toolchain, extra);
}

/** test/fixtures/workloads/workload.c. */
export function buildWorkload(toolchain: Toolchain = {}): string {
  return buildProgram(join(workloadsDir, 'workload.c'), toolchain, []);
}

/** The real python3 binary (not a pyenv shim script, whose fork/exec chain would be measured instead). */
export const python3 = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

export type Mode = 'none' | 'off' | 'madvise' | 'prctl' | 'auto';

/** The kernels madvise mode is tested on, as a name suffix and extra environment: this
 * one, and one before 6.11, whose lack of PROCMAP_QUERY a test switch plays (walks of
 * /proc/self/maps alone find new mappings there). That is where madvise mode runs in the
 * field: prctl needs 6.4. */
export const MADVISE_KERNELS: [string, Record<string, string>][] = [
  ['', {}],
  [', on a kernel without PROCMAP_QUERY', { KSM_PRELOAD_TEST_NO_PROCMAP_QUERY: '1' }],
];

/** Environment running a program under the library in `mode` ('none': no library at all), from `base` and `extra`. */
export function preloadEnv(mode: Mode, library = buildLibrary(), extra: Record<string, string> = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, ...extra };
  delete env.LD_PRELOAD;
  delete env.KSM_PRELOAD_MODE;
  if (mode !== 'none') {
    env.LD_PRELOAD = library;
    env.KSM_PRELOAD_MODE = mode;
  }
  return env;
}

export interface Running {
  child: ChildProcessWithoutNullStreams;
  stderr: () => string;
  /** Closes stdin (the fixtures' signal to exit) and waits for the exit code. */
  finish: () => Promise<number | null>;
}

/** Polls coverage until it reaches `ratio` (or 10 s pass) and returns the last reading:
 * the library marks new memory when the program pauses, just after it printed "ready". */
export async function coverageReaching(pid: number, ratio: number): Promise<ReturnType<typeof coverage>> {
  let last = coverage(pid);
  // KSM_TEST_TIME_SCALE: npm run test:kernels sets 3 in its guests, which run at a third of the speed.
  const deadline = Date.now() + 10_000 * Number(process.env.KSM_TEST_TIME_SCALE ?? '1');
  while (last.ratio < ratio && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    last = coverage(pid);
  }
  return last;
}

/** Starts a workload and resolves once it printed "ready" (its memory is in place). */
export function startWorkload(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Running> {
  const child = spawn(command, args, { env, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const running: Running = {
    child,
    stderr: () => stderr,
    finish: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.stdin.end();
      }),
  };
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('ready\n')) resolve(running);
    });
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code} before it was ready: ${stderr}`)));
    child.once('error', reject);
  });
}
