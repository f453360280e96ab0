// Processes for the attach tests: the C fixture (fixtures/target.c), compiled once
// per test file, and helpers to start programs and wait for their "ready" line.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachHelper } from '../../lib/core/paths.js';

let fixtureDir: string | undefined;

/** Why the attach tests cannot run here, or undefined. */
export function attachUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `ptrace injection needs Linux (this is ${process.platform})`;
  if (process.arch !== 'x64') return `the attach tests run on x86_64 (this is ${process.arch}); aarch64 is built only`;
  const helper = attachHelper();
  if (helper.path === undefined) return helper.reason;
  if (process.getuid?.() !== 0) return 'the attach tests trace processes of other users and write KSM knobs: they need root';
  return undefined;
}

/** The compiled fixture; removed by removeFixture(). */
export function targetBinary(): string {
  if (fixtureDir === undefined) {
    fixtureDir = mkdtempSync(join(tmpdir(), 'ksm-attach-'));
    chmodSync(fixtureDir, 0o755);
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', join(fixtureDir, 'target'), join(__dirname, 'fixtures', 'target.c')]);
  }
  return join(fixtureDir, 'target');
}

export function removeFixture(): void {
  if (fixtureDir !== undefined && existsSync(fixtureDir)) rmSync(fixtureDir, { recursive: true, force: true });
  fixtureDir = undefined;
}

/** A started program whose output the test reads. */
export interface Started {
  child: ChildProcess;
  pid: number;
  /** Everything it printed so far. */
  output: () => string;
  /** Resolves with its exit code and full output. */
  exited: Promise<{ code: number | null; output: string }>;
}

/** Starts `command` and resolves once its output matches `ready`. */
export function startProgram(command: string, args: string[], ready: RegExp = /ready/, options: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Started> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  let text = '';
  const exited = new Promise<{ code: number | null; output: string }>((resolve) => child.once('close', (code) => resolve({ code, output: text })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} printed no ${ready} in 30 s: ${text}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (ready.test(text)) {
        clearTimeout(timer);
        resolve({ child, pid: child.pid ?? 0, output: () => text, exited });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code} before it was ready: ${text}`));
    });
  });
}

export function startTarget(...args: string[]): Promise<Started> {
  return startProgram(targetBinary(), args);
}

export async function stop(...programs: Started[]): Promise<void> {
  await Promise.all(
    programs.map(async (program) => {
      if (program.child.exitCode === null && program.child.signalCode === null) program.child.kill('SIGKILL');
      await program.exited;
    }),
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
