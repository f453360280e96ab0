import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeMemory } from '../../lib/analysis/analyze.js';
import { requireOrSkip } from '../helpers/e2e.js';
import { exitedPid, startFixture, stopFixtures, type FixtureProcess } from './fixture.js';

const LAYOUT = { shared: 4, repeated: 2, zero: 2, unique: 2, adviseShared: false };
const NOBODY = 65534;
const builtAnalyze = join(__dirname, '..', '..', 'dist', 'cjs', 'analysis', 'analyze.js');

let fixture: FixtureProcess;

beforeAll(async () => {
  fixture = await startFixture(LAYOUT);
});

afterAll(async () => {
  await stopFixtures([fixture]);
});

describe('analyzeMemory with processes it cannot read', () => {
  it('lists a PID that has exited with the reason and still reports the others', async () => {
    const gone = await exitedPid();
    const analysis = await analyzeMemory([gone, { pid: fixture.pid, ranges: [fixture.region] }]);
    const [missing, present] = analysis.processes;
    expect(missing).toMatchObject({ pid: gone, residentAnonymousBytes: 0, error: { code: 'ENOENT', message: 'no such process (it has exited)' } });
    expect(present?.error).toBeUndefined();
    expect(present?.residentAnonymousBytes).toBe(10 * 4096);
    expect(analysis.residentAnonymousBytes).toBe(10 * 4096);
  });

  it("names the missing rights when another user's process is read without root", (ctx) => {
    requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
    requireOrSkip(ctx, existsSync(builtAnalyze) ? undefined : `${builtAnalyze} is missing: run npm run build`);
    // A separate Node process as nobody: the test runner itself must stay root.
    const script = `require(${JSON.stringify(builtAnalyze)}).analyzeMemory([${fixture.pid}]).then((r) => process.stdout.write(JSON.stringify(r)))`;
    const output = execFileSync(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8' });
    const analysis = JSON.parse(output) as Awaited<ReturnType<typeof analyzeMemory>>;
    expect(analysis.processes).toHaveLength(1);
    expect(analysis.processes[0]?.error?.code).toBe('EACCES');
    expect(analysis.processes[0]?.error?.message).toMatch(/run as root, or as its owner/);
    expect(analysis.residentAnonymousBytes).toBe(0);
    // PFNs are hidden from non-root users, so merged pages cannot be told apart.
    expect(analysis.mergedBytes).toBeUndefined();
  });

  it('reads its own processes without root, but cannot see what is merged', async (ctx) => {
    requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
    requireOrSkip(ctx, existsSync(builtAnalyze) ? undefined : `${builtAnalyze} is missing: run npm run build`);
    const own = await startFixture(LAYOUT, { uid: NOBODY, gid: NOBODY });
    try {
      const script = `const lib = require(${JSON.stringify(builtAnalyze)});
        Promise.all([lib.analyzeMemory([{ pid: ${own.pid}, ranges: [${JSON.stringify(own.region)}] }]), lib.measureMergedBytes([${own.pid}])])
          .then(([analysis, merged]) => process.stdout.write(JSON.stringify({ analysis, merged: merged ?? 'undefined' })))`;
      const output = execFileSync(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8' });
      const { analysis, merged } = JSON.parse(output) as { analysis: Awaited<ReturnType<typeof analyzeMemory>>; merged: unknown };
      expect(merged).toBe('undefined');
      expect(analysis.processes[0]?.error).toBeUndefined();
      expect(analysis.residentAnonymousBytes).toBe(10 * 4096);
      expect(analysis.ideal.zeroBytes).toBe(4096);
      expect(analysis.mergedBytes).toBeUndefined();
    } finally {
      await stopFixtures([own]);
    }
  });
});
