import type { TestContext } from 'vitest';
import { requireOrSkip } from '../../helpers/e2e.js';
import { which } from './native-build.js';

/**
 * Tests that need a tool from Debian skip without it, and fail under
 * KSM_REQUIRE_E2E=1 (CI installs every package named here, see .ci/run).
 */
export function requireTool(ctx: TestContext, command: string, debianPackage: string): string {
  const path = which(command);
  requireOrSkip(ctx, path ? undefined : `${command} is not installed (Debian package ${debianPackage})`);
  return path ?? command;
}

/** The same for a file, such as another malloc's shared library. */
export function requireFile(ctx: TestContext, exists: boolean, what: string, debianPackage: string): void {
  requireOrSkip(ctx, exists ? undefined : `${what} is missing (Debian package ${debianPackage})`);
}
