// Replacing the Node process with another program, keeping its pid: `ksm run`
// uses it so that no Node parent stays behind.
import { getSystemErrorMap } from 'node:util';
import { ksmAddon } from '../core/capability.js';
import { KsmError, notSupportedError } from '../core/errors.js';
import { checkCString, describe } from '../core/validate.js';

/**
 * Runs `file` in place of this process with execve(2): same pid, same open
 * descriptors (except close-on-exec ones), no Node parent left behind. `file` is
 * used as given (no PATH search) and becomes argv[0]; `args` follow it. `env`
 * defaults to process.env; entries whose value is undefined are left out.
 *
 * Nothing is flushed: output Node has not yet handed to the kernel is lost, so
 * write what must be seen synchronously (fs.writeSync) before calling. Before the
 * exec, the signal dispositions Node changes (SIGPIPE and SIGXFSZ ignored), the
 * signal mask, non-blocking stdio and a raw-mode terminal are put back to what a
 * fresh program expects.
 *
 * Returns only by throwing: a KsmError with the errno code (`ENOENT`, `EACCES`,
 * `ENOEXEC`, ...) when the kernel refuses, and the process carries on; a
 * KsmError `ENOTSUP` without the native addon; TypeError/RangeError for bad
 * arguments.
 *
 * @example
 * import { writeSync } from 'node:fs';
 * writeSync(1, 'handing over to sh\n');
 * execInPlace('/bin/sh', ['-c', 'echo "still pid $$"']);
 */
export function execInPlace(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): never {
  const operation = 'execInPlace';
  checkCString(operation, 'file', file);
  if (!Array.isArray(args)) throw new TypeError(`${operation}: args must be an array of strings (got ${describe(args)})`);
  const argv = [file, ...args.map((arg, i) => checkCString(operation, `args[${i}]`, arg, { allowEmpty: true }))];
  const envp = environmentStrings(operation, env);
  const load = ksmAddon();
  if (!load.addon) throw notSupportedError('execInPlace', load.reason);
  try {
    return load.addon.execve(file, argv, envp);
  } catch (error) {
    if (!(error instanceof KsmError) || error.errno === undefined) throw error;
    // libuv's wording where it has one; the code ends the message either way.
    const description = getSystemErrorMap().get(-error.errno)?.[1];
    throw KsmError.fromErrno('execve', error.errno, `cannot execute ${file}${description ? `: ${description}` : ''}`, error);
  }
}

/** "NAME=value" strings for execve, from an environment object. */
function environmentStrings(operation: string, env: unknown): string[] {
  if (typeof env !== 'object' || env === null || Array.isArray(env)) {
    throw new TypeError(`${operation}: env must be an object of strings (got ${describe(env)})`);
  }
  const strings: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    checkCString(operation, 'an env name', name);
    if (name.includes('=')) throw new RangeError(`${operation}: env name ${JSON.stringify(name)} must not contain "="`);
    checkCString(operation, `env.${name}`, value, { allowEmpty: true });
    strings.push(`${name}=${value}`);
  }
  return strings;
}
