import { describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { readSmaps } from '../helpers/smaps.js';
import { buildFixture, coverageReaching, preloadEnv, startWorkload } from './native-build.js';

describe('ksm_preload_exclude_range', () => {
  it('keeps a registered secret unmarked through later walks while the rest is marked', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const program = buildFixture('excluded_secret', {}, ['-ldl']);
    const running = await startWorkload(program, [], preloadEnv('madvise'));
    try {
      const pid = running.child.pid!;
      // The only mapping of exactly 4 MiB, all of it resident.
      const secret = readSmaps(pid).find((m) => m.end - m.start === 4n << 20n && m.anonymousKb === 4096);
      expect(secret, 'the 4 MiB secret mapping').toBeDefined();
      expect(secret!.flags).not.toContain('mg');
      expect((await coverageReaching(pid, 0.7)).ratio).toBeGreaterThan(0.7);
    } finally {
      await running.finish();
    }
  });
});
