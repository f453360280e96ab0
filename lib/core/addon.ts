import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { KsmError } from './errors.js';

/**
 * Functions the C++ addon exports. Each module of native/addon/ adds its own;
 * TypeScript validates every argument before it reaches them.
 */
export interface NativeAddon {
  setErrorClass(errorClass: typeof KsmError): void;
  [name: string]: unknown;
}

export type NativeLoad = { addon: NativeAddon; reason?: undefined } | { addon?: undefined; reason: string };

/** The package's root folder, where binding.gyp, build/ and prebuilds/ live. */
export const packageRoot = findPackageRoot(__dirname);

/** lib/ in development and tests, dist/cjs/ when installed: walk up to binding.gyp. */
function findPackageRoot(from: string): string {
  let dir = from;
  for (let depth = 0; depth < 4; depth++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = join(dir, '..');
  }
  return join(from, '..');
}

let cached: NativeLoad | undefined;

/**
 * Loads the addon on first use and remembers the outcome. Never throws: on a
 * platform or install without it, `reason` says why, for ksmSupport() and `ksm doctor`.
 */
export function loadNative(): NativeLoad {
  cached ??= tryLoad();
  return cached;
}

/** Forgets the cached load; tests use it together with KSM_PRELOAD_NO_ADDON. */
export function resetNativeForTesting(): void {
  cached = undefined;
}

function tryLoad(): NativeLoad {
  if (process.platform !== 'linux') {
    return { reason: `KSM is a Linux kernel feature; this is ${process.platform}` };
  }
  if (process.env.KSM_PRELOAD_NO_ADDON === '1') {
    return { reason: 'the addon is disabled by KSM_PRELOAD_NO_ADDON=1' };
  }
  try {
    // node-gyp-build picks a matching prebuild, else build/Release.
    const load = createRequire(__filename)('node-gyp-build') as (dir: string) => NativeAddon;
    const addon = load(packageRoot);
    addon.setErrorClass(KsmError);
    return { addon };
  } catch (error) {
    const buildFailure = readBuildFailure();
    const why = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { reason: buildFailure ? `the native build failed at install: ${buildFailure}` : `the native addon did not load: ${why}` };
  }
}

/** scripts/install.js records why a build failed, so the reason outlives the install log. */
function readBuildFailure(): string | undefined {
  try {
    const status = JSON.parse(readFileSync(join(packageRoot, 'build', 'ksm-build-status.json'), 'utf8')) as {
      ok?: boolean;
      reason?: string;
    };
    return status.ok === false ? status.reason : undefined;
  } catch {
    return undefined;
  }
}
