// A Linux kernel built without CONFIG_KSM refuses MADV_MERGEABLE and
// MADV_UNMERGEABLE with EINVAL. This machine has KSM, so an addon answering
// like such a kernel stands in for it.
import { describe, expect, it, vi } from 'vitest';
import { allocMergeable, allocUnmergeable } from '../../lib/marking/alloc.js';
import { markMergeable, unmarkMergeable } from '../../lib/marking/mark.js';
import { keepProcessMergeable, markProcessMergeable } from '../../lib/marking/process-merging.js';

// Hoisted above the imports by vitest, so it imports what it needs itself.
vi.mock('../../lib/core/capability.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../lib/core/capability.js')>();
  const { KsmError: Refusal } = await import('../../lib/core/errors.js');
  const refuse = () => {
    throw Refusal.fromErrno('madvise', 22, 'Invalid argument');
  };
  const addon = { pageSize: () => 4096, addressOf: () => 0, madvise: refuse, allocMapping: refuse, markProcess: refuse };
  return { ...original, ksmAddon: () => ({ addon }) };
});

const NO_KSM = /the kernel was built without KSM \(CONFIG_KSM\)/;

describe('on a kernel without KSM', () => {
  it('markMergeable reports it; unmarkMergeable passes the error on', () => {
    expect(markMergeable(new ArrayBuffer(4 * 4096))).toMatchObject({ supported: false, advisedBytes: 0, reason: expect.stringMatching(NO_KSM) });
    expect(() => markMergeable(new ArrayBuffer(4 * 4096), { strict: true })).toThrow(/ENOTSUP/);
    expect(() => unmarkMergeable(new ArrayBuffer(4 * 4096))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('allocMergeable and allocUnmergeable return ordinary Buffers: nothing can merge', () => {
    expect(allocMergeable(10, 1)).toEqual(Buffer.alloc(10, 1));
    expect(allocUnmergeable(10, 2)).toEqual(Buffer.alloc(10, 2));
    expect(() => allocUnmergeable(10, 2, { strict: true })).toThrow(NO_KSM);
  });

  it('the process passes report it', () => {
    expect(markProcessMergeable()).toEqual({ supported: false, reason: expect.stringMatching(NO_KSM), mappings: 0, bytes: 0, failed: 0 });
    expect(keepProcessMergeable({ intervalMs: 5 })).toMatchObject({ supported: false, passes: 0, reason: expect.stringMatching(NO_KSM) });
  });
});
