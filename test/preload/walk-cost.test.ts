import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/tools.js';
import { readSmaps } from '../helpers/smaps.js';
import { run } from '../reliability/support/run.js';
import { buildLibrary, MADVISE_KERNELS, preloadEnv, repoRoot } from './native-build.js';

// The periodic full walk must not re-advise every mapping each time: each madvise takes
// the mmap lock for writing, on whichever thread happens to allocate. A program with
// 5000 marked VMAs allocates for 5 s (four full walks at most, one a second, and at least
// three even when strace slows it down); strace counts every MADV_MERGEABLE it makes.
// Re-advising all of them would be 5000 per walk.

const VMAS = 5000;
const SECONDS = 5;

function buildWorkload(): string {
  const out = join(tmpdir(), `ksm-many-vmas-${process.pid}`);
  execFileSync('gcc', ['-O2', '-Wall', '-o', out, join(repoRoot, 'bench', 'workloads', 'many_vmas.c')]);
  return out;
}

describe('the periodic walk re-advises a bounded number of marked mappings', () => {
  for (const [kernel, extra] of MADVISE_KERNELS) {
    it(`${VMAS} marked VMAs, ${SECONDS} s of allocation: few MADV_MERGEABLE calls${kernel}`, (ctx) => {
      const strace = requireTool(ctx, 'strace');
      const workload = buildWorkload();
      const log = join(tmpdir(), `ksm-walk-cost-${process.pid}.log`);
      try {
        const env = preloadEnv('madvise', buildLibrary(), { ...extra, KSM_PRELOAD_VERBOSE: '1' });
        const result = run(strace, ['-f', '-qq', '-e', 'trace=madvise', '-e', 'signal=none', '-o', log, '--', workload, String(VMAS), String(SECONDS)], { env, timeoutMs: 60_000 });
        expect(result.status, result.stderr.toString()).toBe(0);
        const stderr = result.stderr.toString();
        const walks = Number(/in (\d+) walks/.exec(stderr.split('exit summary')[1] ?? '')?.[1] ?? 0);
        expect(walks, `the workload saw too few walks to tell: ${stderr}`).toBeGreaterThanOrEqual(3);
        const advised = readFileSync(log, 'utf8').split('\n').filter((line) => line.includes('MADV_MERGEABLE')).length;
        // A first walk, the region's own mapping, and at most 128 revisits per later walk.
        expect(advised, `${advised} MADV_MERGEABLE calls in ${walks} walks`).toBeLessThan(200 * walks);
        expect(advised).toBeLessThan(VMAS);
      } finally {
        rmSync(log, { force: true });
        rmSync(workload, { force: true });
      }
    }, 90_000);
  }
});

describe('memory that reappears at a marked address is marked again', () => {
  for (const [kernel, extra] of MADVISE_KERNELS) {
    it(`a mapping replaced in place, out of the hooks' sight, gets mg within the periodic walks${kernel}`, async () => {
      const program = join(tmpdir(), `ksm-replace-in-place-${process.pid}`);
      execFileSync('gcc', ['-O2', '-Wall', '-o', program, join(repoRoot, 'test', 'fixtures', 'preload', 'replace_in_place.c')]);
      try {
        const child = spawn(program, [], { env: preloadEnv('madvise', buildLibrary(), extra), stdio: ['pipe', 'pipe', 'inherit'] });
        const address = await new Promise<bigint>((resolve, reject) => {
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => {
            out += chunk.toString();
            const match = /^replaced=(0x[0-9a-f]+)\n/.exec(out);
            if (match) resolve(BigInt(match[1] ?? 0));
          });
          child.once('exit', (code) => reject(new Error(`exited with ${code}`)));
        });
        let flags: string[] = [];
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline) {
          flags = readSmaps(child.pid ?? 0).find((m) => m.start <= address && address < m.end)?.flags ?? [];
          if (flags.includes('mg')) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        child.stdin.end();
        await new Promise((resolve) => child.once('exit', resolve));
        expect(flags, 'the replaced mapping was never marked again').toContain('mg');
      } finally {
        rmSync(program, { force: true });
      }
    }, 30_000);
  }
});
