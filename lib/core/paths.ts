import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './addon.js';
import { LAUNCHER_NAME, LIBRARY_NAME } from './facts.js';

/** A file of the native build: its path, or why there is none. */
export type BuiltFile = { path: string; reason?: undefined } | { path?: undefined; reason: string };

/** scripts/libc.js, which the install step shares: the prebuild folder for this C library. */
const { prebuildFolder } = createRequire(__filename)(join(packageRoot, 'scripts', 'libc.js')) as { prebuildFolder: (root: string) => string };

function findBuilt(fileName: string): BuiltFile {
  if (process.platform !== 'linux') return { reason: `${fileName} is built for Linux only; this is ${process.platform}` };
  const candidates = [
    join(prebuildFolder(packageRoot), fileName),
    join(packageRoot, 'build', 'Release', fileName),
  ];
  const found = candidates.find((file) => existsSync(file));
  return found ? { path: found } : { reason: `${fileName} was not built (looked in ${candidates.join(', ')}); run \`npm rebuild ksm-preload\`` };
}

/** The absolute path of libksm_preload.so, for LD_PRELOAD. */
export function preloadLibrary(): BuiltFile {
  return findBuilt(LIBRARY_NAME);
}

/** The absolute path of the ksm-exec launcher. */
export function launcher(): BuiltFile {
  return findBuilt(LAUNCHER_NAME);
}

/** The absolute path of the ksm-attach helper, which `ksm attach` runs. */
export function attachHelper(): BuiltFile {
  return findBuilt('ksm-attach');
}
