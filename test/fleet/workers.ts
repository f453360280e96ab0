import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type OptIn = 'madvise' | 'prctl' | 'none';

export interface Worker {
  child: ChildProcess;
  pid: number;
}

let built: { dir: string; binary: string } | undefined;

/** Compiles merging-worker.c once per test file; removeWorkerBinary() deletes it. */
export function workerBinary(): string {
  if (built) return built.binary;
  const dir = mkdtempSync(join(tmpdir(), 'ksm-fleet-'));
  const binary = join(dir, 'merging-worker');
  execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', binary, join(__dirname, 'merging-worker.c')]);
  built = { dir, binary };
  return binary;
}

export function removeWorkerBinary(): void {
  if (built) rmSync(built.dir, { recursive: true, force: true });
  built = undefined;
}

/** Starts a worker and waits until its pages are written and marked. */
export function startWorker(pages: number, optIn: OptIn, env: NodeJS.ProcessEnv = process.env): Promise<Worker> {
  const child = spawn(workerBinary(), [String(pages), optIn], { stdio: ['ignore', 'pipe', 'inherit'], env });
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', () => resolve({ child, pid: child.pid ?? 0 }));
    child.once('exit', (code) => reject(new Error(`merging-worker exited with ${code} before it was ready`)));
    child.once('error', reject);
  });
}

export async function stopWorkers(workers: readonly Worker[]): Promise<void> {
  await Promise.all(
    workers.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}
