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
  line: number;
  start: bigint;
  end: bigint;
  advice: string;
}

// strace -f may split a call across two lines (<unfinished ...> / <... resumed>): the
// arguments stay on the first, and every attempt counts, whatever it returned.
function madviseCalls(lines: string[]): Advice[] {
  const calls: Advice[] = [];
  lines.forEach((text, line) => {
    const match = /madvise\((0x[0-9a-f]+), (\d+), (MADV_\w+)/.exec(text);
    if (!match) return;
    const start = BigInt(match[1] ?? 0);
    calls.push({ line, start, end: start + BigInt(match[2] ?? 0), advice: match[3] ?? '' });
  });
  return calls;
}

/** The line of the mmap that created the mapping at `start` (the last before `before`):
 * advice given earlier concerned an older mapping at that address, unmapped since. */
function creationLine(lines: string[], start: bigint, before: number): number {
  const result = `= 0x${start.toString(16)}`;
  for (let line = before - 1; line >= 0; line--) {
    const text = lines[line] ?? '';
    if (text.includes('mmap') && text.trimEnd().endsWith(result)) return line;
  }
  return -1;
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
        ['-f', '-qq', '-e', 'trace=madvise,mmap', '-e', 'signal=none', '-o', log, '--', process.execPath, script, join(repoRoot, 'dist/cjs/index.js'), String(SECRET_PAGES), 'none'],
        { env: modeEnv('madvise'), input: '', timeoutMs: 120_000 },
      );
      expect(result.status, explain(result)).toBe(0);
      const lines = readFileSync(log, 'utf8').split('\n');
      const calls = madviseCalls(lines);
      const secrets = calls.filter((c) => c.advice === 'MADV_DONTDUMP' && c.end - c.start === BigInt(SECRET_PAGES * pageSize));
      expect(secrets, 'the secret (MADV_DONTDUMP of its exact size) was not found').toHaveLength(1);
      const [secret] = secrets as [Advice];
      const created = creationLine(lines, secret.start, secret.line);
      expect(created, 'the mmap that created the secret was not found').toBeGreaterThanOrEqual(0);
      const mergeable = calls.filter((c) => c.advice === 'MADV_MERGEABLE');
      expect(mergeable.length, 'nothing was advised at all: the case proved nothing').toBeGreaterThan(0);
      const overlapping = mergeable.filter((c) => c.line > created && c.start < secret.end && secret.start < c.end);
      expect(overlapping.map((c) => `0x${c.start.toString(16)}-0x${c.end.toString(16)}`), 'MADV_MERGEABLE covered the secret').toEqual([]);
    } finally {
      rmSync(log, { force: true });
    }
  }, 180_000);
});
