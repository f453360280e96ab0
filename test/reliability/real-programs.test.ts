import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coverage } from '../helpers/smaps.js';
import { fingerprint } from './support/compare.js';
import { repoRoot } from './support/native-build.js';
import { explain, MODES, modeEnv, percent, run, runHeld, type Mode, type RunResult } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// RELIABILITY.md §1: real programs under the library in madvise and prctl mode
// against a run without it. stdout, stderr and the exit code must be identical
// byte for byte. Coverage comes from smaps for the workloads, which wait before
// exit (test/fixtures/workloads/README.md), from the library's
// KSM_PRELOAD_VERBOSE exit summary for the short-lived programs.

const workloads = join(repoRoot, 'test/fixtures/workloads');
const SORT_LINES = 400_000;
const SQL_INSERTS = 5_000;
const REDIS_KEYS = 3_000;

let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'ksm-real-programs-'));
  // Lines with a varying sort key, so sort really has to move them.
  const lines: string[] = [];
  for (let i = 0; i < SORT_LINES; i++) lines.push(`${(i * 2654435761) % 1000003} row-${i} ${'x'.repeat(i % 40)}`);
  writeFileSync(join(work, 'sort-input.txt'), `${lines.join('\n')}\n`);
  const sql = ['CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL);', 'BEGIN;'];
  for (let i = 0; i < SQL_INSERTS; i++) sql.push(`INSERT INTO t (name, score) VALUES ('name-${i % 97}', ${(i * 37) % 1000} / 7.0);`);
  sql.push('COMMIT;', 'SELECT name, count(*), round(sum(score), 3) FROM t GROUP BY name ORDER BY 3 DESC LIMIT 5;');
  sql.push("SELECT count(*) FROM t WHERE name LIKE 'name-1%';");
  writeFileSync(join(work, 'workload.sql'), `${sql.join('\n')}\n`);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Program {
  name: string;
  command: string;
  debianPackage: string;
  args: () => string[];
  input?: () => string;
  env?: NodeJS.ProcessEnv;
  /** The exit code of the run without the library (the workloads are given their own, to see it pass through). */
  status?: number;
  /** A workload: prints "ready" on stdout and waits for stdin to close before exiting. */
  holds?: boolean;
  /** A fresh, identically named working folder for every run (git writes into it). */
  freshCwd?: boolean;
}

const gitScript = [
  'git init -q -b main .',
  'printf "one\\n" > a.txt && git add a.txt && git commit -q -m first',
  'seq 1 2000 > b.txt && git add b.txt && git commit -q -m second',
  'git log --stat --format="%H %an %ad %s"',
  'git show --format=%T -s HEAD',
].join(' && ');

const gitEnv = {
  HOME: '/nonexistent',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Reliability Suite',
  GIT_AUTHOR_EMAIL: 'suite@example.invalid',
  GIT_AUTHOR_DATE: '2026-11-27T00:00:00Z',
  GIT_COMMITTER_NAME: 'Reliability Suite',
  GIT_COMMITTER_EMAIL: 'suite@example.invalid',
  GIT_COMMITTER_DATE: '2026-11-27T00:00:00Z',
};

const PROGRAMS: Program[] = [
  { name: 'bash script', command: 'bash', debianPackage: 'bash', args: () => [join(workloads, 'workload.sh')], env: { WORKLOAD_EXIT_STATUS: '3' }, holds: true, status: 3 },
  { name: 'sort of a large file', command: 'sort', debianPackage: 'coreutils', args: () => ['-k2,2', join(work, 'sort-input.txt')] },
  { name: 'ls -R', command: 'ls', debianPackage: 'coreutils', args: () => ['-lR', '--time-style=+', '/usr/include'] },
  { name: 'python3', command: '/usr/bin/python3', debianPackage: 'python3', args: () => [join(workloads, 'workload.py')], env: { WORKLOAD_EXIT_STATUS: '4' }, holds: true, status: 4 },
  { name: 'perl', command: 'perl', debianPackage: 'perl', args: () => [join(workloads, 'workload.pl')], env: { WORKLOAD_EXIT_STATUS: '5' }, holds: true, status: 5 },
  { name: 'node', command: process.execPath, debianPackage: 'nodejs', args: () => [join(workloads, 'workload.js')], env: { WORKLOAD_EXIT_STATUS: '6' }, holds: true, status: 6 },
  { name: 'git init/commit/log', command: 'sh', debianPackage: 'git', args: () => ['-c', gitScript], env: gitEnv, freshCwd: true },
  { name: 'sqlite3', command: 'sqlite3', debianPackage: 'sqlite3', args: () => [':memory:'], input: () => readSql() },
  { name: 'gcc compiling a file', command: 'gcc', debianPackage: 'gcc', args: () => ['-O2', '-S', '-o', '-', join(workloads, 'workload.c')] },
];

function readSql(): string {
  return readFileSync(join(work, 'workload.sql'), 'utf8');
}

type ProgramRun = RunResult & { coverage?: string; mergeableKb?: number };

async function runProgram(program: Program, mode: Mode, extraEnv: NodeJS.ProcessEnv = {}): Promise<ProgramRun> {
  let cwd: string | undefined;
  if (program.freshCwd) {
    cwd = join(work, 'cwd');
    rmSync(cwd, { recursive: true, force: true });
    mkdirSync(cwd);
  }
  // C collation and a fixed timezone, so the output can only differ because of the library.
  const env = modeEnv(mode, { LC_ALL: 'C', TZ: 'UTC', ...program.env, ...extraEnv });
  const options = { env, cwd, input: program.input?.(), timeoutMs: 60_000 };
  if (!program.holds) return run(program.command, program.args(), options);
  const result = await runHeld(program.command, program.args(), { ...options, marker: 'ready\n', markerOn: 'stdout' });
  const { ratio, anonymousKb, vmas, mergeableKb } = result.held;
  return { ...result, mergeableKb, coverage: `${percent(ratio)} of ${anonymousKb} kB anonymous, ${vmas} VMAs` };
}

describe('real programs give identical results with the library', () => {
  for (const program of PROGRAMS) {
    it(`${program.name}: same stdout, stderr and exit code in madvise and prctl mode`, async (ctx) => {
      const command = requireTool(ctx, program.command, program.debianPackage);
      const resolved = { ...program, command };
      const results = {} as Record<Mode, ProgramRun>;
      for (const mode of MODES) results[mode] = await runProgram(resolved, mode);
      const reference = results.off;
      expect(reference.status, explain(reference)).toBe(program.status ?? 0);
      for (const mode of ['madvise', 'prctl'] as const) {
        const result = results[mode];
        expect(result.timedOut, `${mode}: ${explain(result)}`).toBe(false);
        expect(result.signal, `${mode}: ${explain(result)}`).toBe(reference.signal);
        expect(result.status, `${mode}: ${explain(result)}`).toBe(reference.status);
        expect(fingerprint(result.stdout), `${mode}: stdout`).toBe(fingerprint(reference.stdout));
        expect(result.stderr.toString(), `${mode}: stderr`).toBe(reference.stderr.toString());
      }
      if (program.holds) {
        for (const mode of MODES) console.log(`${program.name} [${mode}]: coverage ${results[mode].coverage}`);
        for (const mode of ['madvise', 'prctl'] as const) {
          expect(results[mode].mergeableKb, `${mode}: nothing marked mergeable`).toBeGreaterThan(0);
        }
      } else {
        // Short-lived: the library's own exit summary is the report.
        const verbose = await runProgram(resolved, 'madvise', { KSM_PRELOAD_VERBOSE: '1' });
        const summary = verbose.stderr.toString().split('\n').filter((line) => /ksm/i.test(line));
        console.log(`${program.name} [madvise, verbose]:\n  ${summary.join('\n  ') || '(no summary printed)'}`);
      }
    }, 240_000);
  }
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function redisCli(port: number, args: string[], input?: string): RunResult {
  return run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { input, timeoutMs: 30_000 });
}

/** Starts redis-server in `mode`, serves a fixed workload over loopback, stops it; returns what clients saw. */
async function serveRedis(mode: Mode): Promise<{ replies: string; exit: number | null; coverage: ReturnType<typeof coverage> }> {
  const port = await freePort();
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no'],
    { env: modeEnv(mode), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  const log: Buffer[] = [];
  server.stdout.on('data', (chunk: Buffer) => log.push(chunk));
  server.stderr.on('data', (chunk: Buffer) => log.push(chunk));
  try {
    const deadline = Date.now() + 15_000;
    while (redisCli(port, ['PING']).stdout.toString().trim() !== 'PONG') {
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`redis-server did not come up: ${Buffer.concat(log).toString()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const commands: string[] = [];
    for (let i = 0; i < REDIS_KEYS; i++) commands.push(`SET key:${i} ${'v'.repeat(100 + (i % 50))}${i}`);
    for (let i = 0; i < REDIS_KEYS; i += 97) commands.push(`GET key:${i}`, `APPEND key:${i} tail`, `STRLEN key:${i}`);
    commands.push('DBSIZE', 'LPUSH list a b c', 'LRANGE list 0 -1', 'INCRBY counter 41', 'INCR counter');
    const replies = redisCli(port, [], `${commands.join('\n')}\n`);
    expect(replies.status, explain(replies)).toBe(0);
    const held = coverage(server.pid ?? 0);
    const stop = redisCli(port, ['SHUTDOWN', 'NOSAVE']);
    return { replies: replies.stdout.toString() + stop.stdout.toString(), exit: await exited, coverage: held };
  } finally {
    server.kill('SIGKILL');
  }
}

describe('a real server (redis-server) under the library', () => {
  it(`serves ${REDIS_KEYS} keys over loopback with identical replies and a clean stop in both modes`, async (ctx) => {
    requireTool(ctx, 'redis-server', 'redis-server');
    requireTool(ctx, 'redis-cli', 'redis-tools');
    const results = {} as Record<Mode, Awaited<ReturnType<typeof serveRedis>>>;
    for (const mode of MODES) results[mode] = await serveRedis(mode);
    for (const mode of MODES) {
      const c = results[mode].coverage;
      console.log(`redis-server [${mode}]: coverage ${percent(c.ratio)} of ${c.anonymousKb} kB anonymous, ${c.vmas} VMAs`);
    }
    expect(results.off.exit).toBe(0);
    for (const mode of ['madvise', 'prctl'] as const) {
      expect(results[mode].exit, `${mode}: exit code`).toBe(results.off.exit);
      expect(results[mode].replies, `${mode}: replies`).toBe(results.off.replies);
      expect(results[mode].coverage.mergeableKb, `${mode}: nothing marked mergeable`).toBeGreaterThan(0);
    }
  }, 120_000);
});
