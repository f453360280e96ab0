import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { withKsmd } from '../helpers/ksmd.js';
import { AGGRESSIVE_KSMD, filler, LIBRARY_MODES, MergeSamples, requireTools, seededRandom, serverEnv, startServer, stopServer, WITH_KSMD, type IntegrityMode } from './support.js';

// redis under the library, with ksmd merging as fast as it can, takes writes of every
// data type, transactions and deletes; DEBUG DIGEST (a hash of the whole dataset)
// must then equal the digest after the same workload without the library, live and
// after DEBUG RELOAD (a save and load of the dataset).

const TOOLS: Array<[string, string]> = [
  ['redis-server', 'redis-server'],
  ['redis-cli', 'redis-tools'],
];
const PHASES = 6;

const work = mkdtempSync(join(tmpdir(), 'ksm-integrity-redis-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A command in the redis protocol, for redis-cli --pipe. */
function command(...args: Array<string | number>): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(String(arg))}\r\n${arg}\r\n`).join('')}`;
}

/** The same commands on every run, phase by phase. */
function workload(): string[] {
  const random = seededRandom(7_000_003);
  const phases: string[] = [];
  for (let phase = 1; phase <= PHASES; phase++) {
    const commands: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const key = phase * 10_000 + i;
      commands.push(command('SET', `str:${key}`, filler(key, 500 + random(4000))));
      commands.push(command('HSET', `hash:${key % 300}`, `field:${key}`, filler(key, 40 + random(200))));
      commands.push(command('RPUSH', `list:${key % 40}`, `${phase}/${i}/${filler(i, random(100))}`));
      commands.push(command('SADD', `set:${key % 60}`, `member:${random(5000)}`));
      commands.push(command('ZADD', `zset:${key % 30}`, random(1_000_000), `member:${key}`));
      commands.push(command('INCRBY', `counter:${key % 20}`, random(1000) - 500));
    }
    // Large values with long repeats: pages that KSM can merge, then rewritten.
    for (let b = 0; b < 60; b++) commands.push(command('SET', `big:${phase}:${b}`, filler(b % 6, 64 * 1024)));
    for (let t = 0; t < 200; t++) {
      const key = (1 + random(phase)) * 10_000 + random(1500);
      commands.push(
        command('MULTI'),
        command('APPEND', `str:${key}`, `+${phase}.${t}`),
        command('SETRANGE', `big:${1 + random(phase)}:${random(60)}`, random(60_000), filler(t, 300)),
        command('HDEL', `hash:${key % 300}`, `field:${key - 1}`),
        command('LTRIM', `list:${key % 40}`, 0, 400 + random(200)),
        command('SREM', `set:${key % 60}`, `member:${random(5000)}`),
        command('ZREMRANGEBYRANK', `zset:${key % 30}`, 0, random(3)),
        command('EXEC'),
      );
    }
    for (let i = 0; i < 1500; i += 7) commands.push(command('DEL', `str:${phase * 10_000 + i}`));
    commands.push(command('DEL', `big:${phase}:${phase}`));
    phases.push(commands.join(''));
  }
  return phases;
}

function cli(socket: string, args: string[], input?: string): string {
  const run = spawnSync('redis-cli', ['-s', socket, ...args], { input, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed (${run.status}): ${run.stderr}${run.stdout}`);
  return run.stdout.trim();
}

interface Verdict {
  digest: string;
  keys: string;
  reloadedDigest: string;
}

async function runWorkload(mode: IntegrityMode): Promise<{ verdict: Verdict; merges: MergeSamples | undefined }> {
  const dir = join(work, mode);
  mkdirSync(dir);
  const socket = join(dir, 'redis.sock');
  const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes', '--loglevel', 'warning'];
  const ready = (): boolean => existsSync(socket) && spawnSync('redis-cli', ['-s', socket, 'PING'], { encoding: 'utf8', timeout: 10_000 }).stdout?.trim() === 'PONG';
  const server: ChildProcess = await startServer('redis-server', args, serverEnv(mode), ready, `redis-server (${mode})`);
  try {
    const merges = mode === 'off' ? undefined : new MergeSamples(server.pid ?? 0);
    for (const [index, phase] of workload().entries()) {
      expect(cli(socket, ['--pipe'], phase)).toMatch(/errors: 0, replies: \d+/);
      // An idle redis has little worth merging: the first phase's values give ksmd something before the rest is written.
      if (index === 0 && merges) expect(await merges.waitMerged(), `redis-server (${mode}) got memory merged`).toBe(true);
      else merges?.take();
    }
    const digest = cli(socket, ['DEBUG', 'DIGEST']);
    const keys = cli(socket, ['DBSIZE']);
    merges?.take();
    expect(cli(socket, ['DEBUG', 'RELOAD'])).toBe('OK');
    return { verdict: { digest, keys, reloadedDigest: cli(socket, ['DEBUG', 'DIGEST']) }, merges };
  } finally {
    await stopServer(server, 'SIGKILL');
  }
}

let baseline: Verdict | undefined;

async function baselineVerdict(ctx: TestContext): Promise<Verdict> {
  requireTools(ctx, TOOLS);
  baseline ??= (await runWorkload('off')).verdict;
  return baseline;
}

describe('redis keeps every write under merging', () => {
  it('the workload without the library gives a stable digest', { timeout: 120_000 }, async (ctx) => {
    const verdict = await baselineVerdict(ctx);
    expect(verdict.digest).toMatch(/^[0-9a-f]{40}$/);
    expect(verdict.digest).not.toBe('0'.repeat(40));
    expect(verdict.reloadedDigest).toBe(verdict.digest);
    expect(Number(verdict.keys)).toBeGreaterThan(8000);
  });

  for (const mode of LIBRARY_MODES) {
    it(`under the library (${mode}) with ksmd merging: DEBUG DIGEST matches`, WITH_KSMD, async (ctx) => {
      const expected = await baselineVerdict(ctx);
      const run = await withKsmd(() => runWorkload(mode), AGGRESSIVE_KSMD);
      expect(run.merges?.mergedThroughout(), run.merges?.toString()).toBe(true);
      expect(run.verdict).toEqual(expected);
    });
  }
});
