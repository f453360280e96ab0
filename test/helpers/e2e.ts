import { existsSync, readFileSync } from 'node:fs';
import type { TestContext } from 'vitest';

/**
 * Tests that need root, KSM or a tool skip with a stated reason on machines
 * without them; with KSM_REQUIRE_E2E=1 (CI) such a skip is a failure instead.
 */
export function requireOrSkip(ctx: TestContext, missing: string | undefined): void {
  if (missing === undefined) return;
  if (process.env.KSM_REQUIRE_E2E === '1') {
    throw new Error(`KSM_REQUIRE_E2E=1 but this test cannot run: ${missing}`);
  }
  ctx.skip(missing);
}

/** Why KSM end-to-end tests cannot run here, or undefined when they can. */
export function ksmUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `KSM needs Linux (this is ${process.platform})`;
  if (!existsSync('/sys/kernel/mm/ksm/run')) return 'the kernel has no KSM (/sys/kernel/mm/ksm missing)';
  if (process.getuid?.() !== 0) return 'changing /sys/kernel/mm/ksm needs root';
  return undefined;
}

/** Why prctl(PR_SET_MEMORY_MERGE) tests cannot run here (needs Linux 6.4+). */
export function prctlUnavailable(): string | undefined {
  const noKsm = ksmUnavailable();
  if (noKsm) return noKsm;
  const match = /^(\d+)\.(\d+)/.exec(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
  const [major, minor] = [Number(match?.[1] ?? 0), Number(match?.[2] ?? 0)];
  return major > 6 || (major === 6 && minor >= 4) ? undefined : `PR_SET_MEMORY_MERGE needs Linux 6.4+ (this is ${major}.${minor})`;
}
