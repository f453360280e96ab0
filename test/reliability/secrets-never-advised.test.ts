import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './support/native-build.js';
import { explain, modeEnv, run } from './support/run.js';
import { requireTool } from '../helpers/tools.js';

// allocUnmergeable() memory must never be advised MADV_MERGEABLE, not even for the
// moment between its mmap and its exclusion: the preload library's mmap hook advises
// every new private anonymous mapping at once. strace sees every madvise the process
// makes; none that advises MERGEABLE may touch the secret's range, found by the
// MADV_DONTDUMP that only allocUnmergeable() applies, with the secret's exact length.

const SECRET_PAGES = 777;

interface Advice {
  start: bigint;
  end: bigint;
  advice: string;
}

function madviseCalls(log: string): Advice[] {
  const calls: Advice[] = [];
  for (const match of log.matchAll(/madvise\((0x[0-9a-f]+), (\d+), (MADV_\w+)\) = 0/g)) {
    const start = BigInt(match[1] ?? 0);
    calls.push({ start, end: start + BigInt(match[2] ?? 0), advice: match[3] ?? '' });
  }
  return calls;
}

describe('secrets are never advised mergeable', () => {
  it('no MADV_MERGEABLE ever covers allocUnmergeable() memory in a Node process under madvise mode', (ctx) => {
    const strace = requireTool(ctx, 'strace', 'strace');
    const log = join(tmpdir(), `ksm-secret-strace-${process.pid}.log`);
    const script = join(repoRoot, 'test/fixtures/reliability/api/secret-holder.cjs');
    const pageSize = 4096;
    try {
      const result = run(
        strace,
        ['-f', '-qq', '-e', 'trace=madvise', '-e', 'signal=none', '-o', log, '--', process.execPath, script, join(repoRoot, 'dist/cjs/index.js'), String(SECRET_PAGES), 'none'],
        { env: modeEnv('madvise'), input: '', timeoutMs: 120_000 },
      );
      expect(result.status, explain(result)).toBe(0);
      const calls = madviseCalls(readFileSync(log, 'utf8'));
      const secrets = calls.filter((c) => c.advice === 'MADV_DONTDUMP' && c.end - c.start === BigInt(SECRET_PAGES * pageSize));
      expect(secrets, 'the secret (MADV_DONTDUMP of its exact size) was not found').toHaveLength(1);
      const [secret] = secrets as [Advice];
      const mergeable = calls.filter((c) => c.advice === 'MADV_MERGEABLE');
      expect(mergeable.length, 'nothing was advised at all: the case proved nothing').toBeGreaterThan(0);
      const overlapping = mergeable.filter((c) => c.start < secret.end && secret.start < c.end);
      expect(overlapping.map((c) => `0x${c.start.toString(16)}-0x${c.end.toString(16)}`), 'MADV_MERGEABLE covered the secret').toEqual([]);
    } finally {
      rmSync(log, { force: true });
    }
  }, 180_000);
});
