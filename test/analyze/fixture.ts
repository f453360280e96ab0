import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Page counts of one fixture process's region; see fixture-pages.c. */
export interface PageLayout {
  shared: number;
  repeated: number;
  zero: number;
  unique: number;
  adviseShared: boolean;
}

export interface FixtureProcess {
  child: ChildProcess;
  pid: number;
  region: { start: number; end: number };
}

let binary: string | undefined;

/** Compiles fixture-pages.c once per test file. */
export function fixtureBinary(): string {
  if (binary) return binary;
  const dir = mkdtempSync(join(tmpdir(), 'ksm-analyze-'));
  chmodSync(dir, 0o755); // other users start it too
  const out = join(dir, 'fixture-pages');
  execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', out, join(__dirname, 'fixture-pages.c')]);
  binary = out;
  return out;
}

/** Starts a fixture process (optionally as another user) and waits for its region. */
export function startFixture(layout: PageLayout, options: { uid?: number; gid?: number } = {}): Promise<FixtureProcess> {
  const args = [layout.shared, layout.repeated, layout.zero, layout.unique, layout.adviseShared ? 1 : 0].map(String);
  const child = spawn(fixtureBinary(), args, { stdio: ['ignore', 'pipe', 'inherit'], ...options });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /^([0-9a-f]+) ([0-9a-f]+)\n/.exec(output);
      if (match) resolve({ child, pid: child.pid ?? 0, region: { start: parseInt(match[1] ?? '', 16), end: parseInt(match[2] ?? '', 16) } });
    });
    child.once('exit', (code) => reject(new Error(`fixture-pages exited with ${code} before printing its region`)));
    child.once('error', reject);
  });
}

export async function stopFixtures(fixtures: readonly FixtureProcess[]): Promise<void> {
  await Promise.all(
    fixtures.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** A PID that belonged to a process which has exited and been reaped. */
export async function exitedPid(): Promise<number> {
  const child = spawn('true');
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid ?? 0;
}
