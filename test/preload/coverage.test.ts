import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ksmUnavailable, prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { buildWorkload, coverageReaching, MADVISE_KERNELS, preloadEnv, python3, startWorkload, workloadsDir, type Mode } from './native-build.js';

// Coverage = anonymous kB in `mg` mappings ÷ all anonymous kB, from /proc/PID/smaps.
const workloads = {
  node: () => [process.execPath, [join(workloadsDir, 'workload.js')]] as const,
  python3: () => [python3, [join(workloadsDir, 'workload.py')]] as const,
  c: () => [buildWorkload(), []] as const,
};

/** Coverage once it reached `expected` (the library marks when the program pauses). */
async function measure(workload: keyof typeof workloads, mode: Mode, expected = 0, extraEnv: Record<string, string> = {}) {
  const [command, args] = workloads[workload]();
  const running = await startWorkload(command, [...args], preloadEnv(mode, undefined, extraEnv));
  try {
    return await coverageReaching(running.child.pid!, expected);
  } finally {
    expect(await running.finish()).toBe(0);
  }
}

describe.each(Object.keys(workloads) as (keyof typeof workloads)[])('coverage of a %s workload', (workload) => {
  it('is near 0 without the library and with KSM_PRELOAD_MODE=off', async () => {
    expect((await measure(workload, 'none')).ratio).toBeLessThan(0.01);
    expect((await measure(workload, 'off')).ratio).toBeLessThan(0.01);
  });

  for (const [kernel, extraEnv] of MADVISE_KERNELS) {
    it(`is at least 95 % in madvise mode${kernel}, without splitting mappings`, async (ctx) => {
      requireOrSkip(ctx, ksmUnavailable());
      const plain = await measure(workload, 'off');
      const marked = await measure(workload, 'madvise', 0.95, extraEnv);
      expect(marked.ratio).toBeGreaterThanOrEqual(0.95);
      // Against the library loaded but idle, so the library's own segments do not count.
      expect(marked.vmas).toBeLessThanOrEqual(Math.ceil(plain.vmas * 1.1));
    });
  }

  it('is at least 99 % in prctl mode', async (ctx) => {
    requireOrSkip(ctx, prctlUnavailable());
    expect((await measure(workload, 'prctl', 0.99)).ratio).toBeGreaterThanOrEqual(0.99);
  });
});

describe('the trailing edge', () => {
  it('covers memory a program allocates right before it goes to sleep', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    // 25 MiB of 256 KiB bytearrays, then the process blocks without allocating again.
    const script = 'import sys\nkeep = [bytearray(b"x") * (256 * 1024) for _ in range(100)]\nprint("ready", flush=True)\nsys.stdin.read()\n';
    const running = await startWorkload(python3, ['-c', script], preloadEnv('madvise'));
    try {
      expect((await coverageReaching(running.child.pid!, 0.95)).ratio).toBeGreaterThanOrEqual(0.95);
    } finally {
      await running.finish();
    }
  });
});
