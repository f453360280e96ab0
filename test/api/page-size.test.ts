import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { systemPageSize } from '../../lib/kernel/page-size.js';

describe('systemPageSize', () => {
  it('agrees with getconf PAGESIZE', () => {
    expect(systemPageSize()).toBe(Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' })));
  });
});
