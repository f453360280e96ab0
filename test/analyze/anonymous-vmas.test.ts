import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAnonymousVmas } from '../../lib/process/anonymous-vmas.js';
import { KsmError } from '../../lib/core/errors.js';
import { readSmaps } from '../helpers/smaps.js';
import { exitedPid, startFixture, stopFixtures, type FixtureProcess } from './fixture.js';

let fixture: FixtureProcess;

beforeAll(async () => {
  fixture = await startFixture({ shared: 8, repeated: 2, zero: 2, unique: 2, adviseShared: true });
});

afterAll(async () => {
  await stopFixtures([fixture]);
});

describe('readAnonymousVmas', () => {
  it('splits the fixture region where madvise marked it, with the kernel’s anonymous sizes', () => {
    const vmas = readAnonymousVmas(fixture.pid).filter((v) => v.start >= fixture.region.start && v.end <= fixture.region.end);
    expect(vmas).toEqual([
      { start: fixture.region.start, end: fixture.region.start + 8 * 4096, advised: true, anonymousBytes: 8 * 4096 },
      { start: fixture.region.start + 8 * 4096, end: fixture.region.end, advised: false, anonymousBytes: 6 * 4096 },
    ]);
  });

  it('keeps exactly the private mappings with anonymous pages that KSM may merge', () => {
    const oracle = readSmaps(fixture.pid).filter(
      (m) => m.perms[3] === 'p' && m.anonymousKb > 0 && !m.flags.some((f) => ['io', 'pf', 'ht', 'mm'].includes(f)),
    );
    expect(readAnonymousVmas(fixture.pid).map((v) => v.start)).toEqual(oracle.map((m) => Number(m.start)));
  });

  it('throws a KsmError with the errno code for a process that is gone', async () => {
    const gone = await exitedPid();
    expect(() => readAnonymousVmas(gone)).toThrow(KsmError);
    expect(() => readAnonymousVmas(gone)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
