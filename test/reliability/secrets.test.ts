import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { fixture, repoRoot } from './support/native-build.js';
import { cleanEnv, explain, modeEnv, runHeld, type Mode } from './support/run.js';

// RELIABILITY.md §10 (keeping secrets unmergeable): memory from allocUnmergeable()
// must never carry `mg`, however the rest of the process is marked: by the
// preload library in madvise mode (whose walks mark every anonymous mapping),
// by prctl merge-any (inherited through LD_PRELOAD or set in-process), or by
// markProcessMergeable(). The secret's mapping is found by its MADV_DONTDUMP
// (`dd`) flag and its exact size.

const SECRET_PAGES = 777;
const SECRET_BYTES = BigInt(SECRET_PAGES * 4096);

async function holdSecret(env: NodeJS.ProcessEnv, inProcess: 'none' | 'mark' | 'prctl'): Promise<{ secretFlags: string[][]; markedElsewhere: boolean }> {
  const script = join(repoRoot, 'test/fixtures/reliability/api/secret-holder.cjs');
  const held = await runHeld(process.execPath, [script, join(repoRoot, 'dist/cjs/index.js'), String(SECRET_PAGES), inProcess], { env, timeoutMs: 60_000 });
  expect(held.status, explain(held)).toBe(0);
  const { mappings } = held.held;
  return {
    secretFlags: mappings.filter((m) => m.flags.includes('dd') && m.end - m.start === SECRET_BYTES).map((m) => m.flags),
    markedElsewhere: held.held.mergeableKb > 0,
  };
}

describe('secrets stay unmergeable', () => {
  const cases: Array<[string, Mode | 'none', 'none' | 'mark' | 'prctl']> = [
    ['the preload library in madvise mode', 'madvise', 'none'],
    ['the preload library in prctl mode', 'prctl', 'none'],
    ['markProcessMergeable()', 'none', 'mark'],
    ['enableProcessMerging() (prctl merge-any)', 'none', 'prctl'],
  ];
  for (const [name, mode, inProcess] of cases) {
    it(`allocUnmergeable() memory has no mg under ${name}, while the rest is marked`, async (ctx) => {
      requireOrSkip(ctx, mode === 'prctl' || inProcess === 'prctl' ? prctlUnavailable() : undefined);
      const env = mode === 'none' ? cleanEnv() : modeEnv(mode);
      const { secretFlags, markedElsewhere } = await holdSecret(env, inProcess);
      expect(secretFlags, 'the secret mapping (dd, exact size) was not found').toHaveLength(1);
      expect(secretFlags[0], 'the secret is mergeable').not.toContain('mg');
      expect(markedElsewhere, 'nothing else was marked: the case proved nothing').toBe(true);
    });
  }
});

describe('the C pattern for secrets (docs/SECURITY.md)', () => {
  for (const mode of ['madvise', 'prctl'] as const) {
    it(`ksm_preload_exclude_range + MADV_UNMERGEABLE keeps a region unmarked (${mode})`, async (ctx) => {
      requireOrSkip(ctx, mode === 'prctl' ? prctlUnavailable() : undefined);
      const held = await runHeld(fixture('secret_exclude'), [], { env: modeEnv(mode), timeoutMs: 30_000 });
      expect(held.status, explain(held)).toBe(0);
      const printed = /^secret=(0x[0-9a-f]+)\+(\d+) excluded=yes\n$/.exec(held.stdout.toString());
      expect(printed, held.stdout.toString()).not.toBeNull();
      const start = BigInt(printed?.[1] ?? 0);
      const end = start + BigInt(printed?.[2] ?? 0);
      const holding = held.held.mappings.filter((m) => m.start < end && m.end > start);
      expect(holding.length, 'no mapping holds the secret').toBeGreaterThan(0);
      for (const mapping of holding) expect(mapping.flags, 'the secret is mergeable').not.toContain('mg');
      expect(held.held.mergeableKb, 'nothing else was marked: the case proved nothing').toBeGreaterThan(0);
    });
  }
});
