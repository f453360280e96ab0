import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeSysfs } from './support/fake-sysfs.js';
import { repoRoot } from './support/native-build.js';
import { cleanEnv, explain, run } from './support/run.js';

// RELIABILITY.md §9 (TS API): every exported function, each argument position,
// against a matrix of hostile values (null, NaN, -1, 1.5, 2**53, BigInt, huge
// and NUL strings, symbols, detached ArrayBuffers, SharedArrayBuffer, revoked
// and throwing Proxies, throwing getters, fake lengths, ...). Only TypeError,
// RangeError or KsmError may come out (or the hostile object's own exception,
// unchanged); never a crash, and the process works afterwards. It runs in a
// child process against the built package, with a fake sysfs tree so that
// knob-writing functions cannot touch the real /sys/kernel/mm/ksm.

describe('the TS API with hostile arguments', () => {
  it('every exported function refuses hostile values with TypeError/RangeError/KsmError, the process intact', () => {
    const sysfs = fakeSysfs();
    try {
      const result = run(process.execPath, [join(repoRoot, 'test/fixtures/reliability/api/hostile-matrix.cjs'), join(repoRoot, 'dist/cjs/index.js')], {
        env: cleanEnv({ KSM_SYSFS_ROOT: sysfs }),
        timeoutMs: 120_000,
      });
      const lastCall = result.stderr.toString().trim().split('\n').filter((line) => line.startsWith('CALL ')).pop();
      expect(result.status, `crashed or hung at ${lastCall}: ${explain(result)}`).toBe(0);
      const report = JSON.parse(result.stdout.toString()) as { calls: number; violations: unknown[]; intact: boolean };
      console.log(`hostile API matrix: ${report.calls} calls, ${report.violations.length} violations`);
      expect(report.violations).toEqual([]);
      expect(report.intact).toBe(true);
      expect(report.calls).toBeGreaterThan(500);
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });
});
