import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { KsmError } from './errors.js';

/** One process's page census, as native/addon/page_hash.cc reports it. */
export interface NativeCensusProcess {
  pid: number;
  errno?: number;
  syscall?: string;
  pages: number;
  advisedPages: number;
  zeroPages: number;
  duplicatePages: number;
  ksmPages: number;
  forkSharedPages: number;
  unreadablePages: number;
}

/** The census of a set of processes: per process, and over all of them. */
export interface NativeCensus {
  processes: NativeCensusProcess[];
  totals: {
    pages: number;
    advisedPages: number;
    zeroPages: number;
    distinctContents: number;
    idealPages: number;
    idealAdvisedPages: number;
    zeroSavingPages: number;
    withinSavingPages: number;
    ksmDistinctPages: number;
  };
  seconds: number;
  pageSize: number;
}

/** What to read of one process: its pid and [start, end, advised(0|1), ...] ranges. */
export interface NativeCensusTask {
  pid: number;
  ranges: number[];
}

/**
 * Every function the C++ addon (native/addon/) exports. TypeScript validates
 * every argument before it reaches them; system failures come back as KsmError.
 */
export interface NativeAddon {
  setErrorClass(errorClass: new (syscall: string, errno: number, detail: string) => KsmError): void;
  pageSize(): number;
  addressOf(buffer: ArrayBuffer): number;
  madvise(address: number, length: number, mergeable: boolean): void;
  allocMapping(size: number, mergeable: boolean): Buffer;
  markProcess(): { mappings: number; bytes: number; failed: number };
  getMemoryMerge(): number;
  setMemoryMerge(on: boolean): void;
  execve(path: string, argv: string[], envp: string[]): never;
  censusPages(
    tasks: NativeCensusTask[],
    options: { maxPageSharing: number; useZeroPages: boolean; contents: boolean },
  ): Promise<NativeCensus>;
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

/**
 * What the addon constructs for a failed system call: `new` on a function that
 * returns an object yields that object, so the addon's errors are plain KsmErrors.
 */
const NativeSyscallError = function (syscall: string, errno: number, detail: string): KsmError {
  return KsmError.fromErrno(syscall, errno, detail);
} as unknown as new (syscall: string, errno: number, detail: string) => KsmError;

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
    addon.setErrorClass(NativeSyscallError);
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
