import { chmodSync, copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { KsmError } from '../core/errors.js';
import { LIBRARY_NAME } from '../core/facts.js';
import { preloadLibrary } from '../core/paths.js';
import { validatePreloadPath } from './snippets.js';

/** /usr/lib64 where the system has it (Red Hat, SUSE), else /usr/lib. */
export function defaultLibraryFolder(): string {
  return existsSync('/usr/lib64') ? '/usr/lib64' : '/usr/lib';
}

/**
 * Copies the built libksm_preload.so into `folder` (default /usr/lib64 or /usr/lib)
 * and returns the installed path. The copy replaces the old file by rename, so
 * programs that have the old one loaded keep running. Never edits /etc/ld.so.preload.
 */
export function installPreloadLibrary(folder: string = defaultLibraryFolder()): string {
  if (typeof folder !== 'string' || !isAbsolute(folder)) throw new RangeError(`the install folder must be an absolute path, got ${JSON.stringify(folder)}`);
  const target = validatePreloadPath(join(folder, LIBRARY_NAME));
  const built = preloadLibrary();
  if (built.path === undefined) throw new KsmError('installPreloadLibrary', 'ENOENT', built.reason);
  const temporary = `${target}.${process.pid}.tmp`;
  try {
    copyFileSync(built.path, temporary);
    chmodSync(temporary, 0o755);
    renameSync(temporary, target);
  } catch (error) {
    rmSync(temporary, { force: true });
    const err = error as NodeJS.ErrnoException;
    const hint = err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS' ? ' (needs root)' : '';
    throw KsmError.fromNode('installPreloadLibrary', error, `cannot install ${target}${hint}: ${err.message}`);
  }
  return target;
}
