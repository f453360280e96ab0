import { describe, expect, it } from 'vitest';
import { coverageFromSmaps } from '../../lib/process/smaps.js';

const SAMPLE = `55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Anonymous:           100 kB
KSM:                   0 kB
VmFlags: rd wr mr mw me ac mg
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
Size:               4096 kB
Anonymous:           300 kB
VmFlags: rd wr mr mw me ac
7f0000400000-7f0000401000 r--p 00000000 08:01 1234                       /usr/lib/libc.so.6
Size:                  4 kB
Anonymous:             0 kB
VmFlags: rd mr mw me mg
`;

describe('coverageFromSmaps', () => {
  it('sums anonymous memory of `mg` mappings against all anonymous memory', () => {
    expect(coverageFromSmaps(SAMPLE)).toEqual({ mergeableAnonBytes: 100 * 1024, anonBytes: 400 * 1024, ratio: 0.25 });
  });

  it('does not mistake a flag that merely starts with "mg"', () => {
    expect(coverageFromSmaps('Anonymous: 8 kB\nVmFlags: rd mgx\n').mergeableAnonBytes).toBe(0);
  });

  it('reports ratio 0 for no anonymous memory, and copes with empty input', () => {
    expect(coverageFromSmaps('')).toEqual({ mergeableAnonBytes: 0, anonBytes: 0, ratio: 0 });
  });
});
