import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { buildCached } from '../helpers/native-build.js';

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

/** fixture-pages.c, compiled once; other users start it too, so it lives in the shared build cache. */
export function fixtureBinary(): string {
  return buildCached('fixture-pages', { compiler: 'cc', sources: [join(__dirname, 'fixture-pages.c')], flags: ['-O2', '-Wall', '-Werror'], fileName: 'fixture-pages' });
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
