import { release } from 'node:os';
import { describe, expect, it } from 'vitest';
import { kernelRelease } from '../../lib/kernel/version.js';

describe('kernel version', () => {
  it('reports uname -r', () => {
    expect(kernelRelease()).toBe(release());
  });
});
