import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/tools.js';
import { buildFixture, buildLibrary, preloadEnv, type Mode } from './native-build.js';

// The cost of the hooks on every allocation, in instructions counted by callgrind:
// deterministic, where CPU time on a shared VM is not. The churn program's malloc/free
// pairs (1 in 8 of 40 KB or more) under each mode, against no library at all. The
// runs get the same small environment wherever the suite runs: the loader and the
// library's start read every variable, so a larger one would count too.

const STEPS = '400000';

function instructions(mode: Mode): number {
  const churn = buildFixture('churn');
  const result = spawnSync('valgrind', ['--tool=callgrind', '--callgrind-out-file=/dev/null', churn, STEPS], { env: preloadEnv(mode, undefined, {}, { PATH: process.env.PATH }), encoding: 'utf8' });
  const collected = /Collected : (\d+)/.exec(result.stderr ?? '');
  if (result.status !== 0 || !collected) throw new Error(`callgrind under ${mode} failed: ${result.stderr}`);
  return Number(collected[1]);
}

describe('instructions per allocation', () => {
  it('madvise mode adds at most 3 % and prctl mode at most 1 % to a malloc/free churn', (ctx) => {
    requireTool(ctx, 'valgrind');
    buildLibrary();
    const none = instructions('none');
    const madvise = instructions('madvise') / none;
    const prctl = instructions('prctl') / none;
    console.log(`churn instructions: madvise ${madvise.toFixed(5)}×, prctl ${prctl.toFixed(5)}× of no library`);
    expect(madvise).toBeLessThanOrEqual(1.03);
    expect(prctl).toBeLessThanOrEqual(1.01);
  }, 180_000);
});
