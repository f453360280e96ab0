import { release } from 'node:os';
import { describe, expect, it } from 'vitest';
import { kernelAtLeast, kernelRelease } from '../../lib/kernel/version.js';

describe('kernel version', () => {
  const [major, minor] = release().split('.').map(Number) as [number, number];

  it('reports uname -r', () => {
    expect(kernelRelease()).toBe(release());
  });

  it('compares major first, then minor', () => {
    expect(kernelAtLeast(major, minor)).toBe(true);
    expect(kernelAtLeast(major, minor + 1)).toBe(false);
    expect(kernelAtLeast(major - 1, minor + 50)).toBe(true);
    expect(kernelAtLeast(major + 1, 0)).toBe(false);
  });
});
