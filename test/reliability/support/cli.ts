import { join } from 'node:path';
import { repoRoot } from './native-build.js';
import { cleanEnv, run, type RunOptions, type RunResult } from './run.js';

/** The package's `ksm` command, as installed users run it (bin/ksm.js over dist/). */
export const ksmBin = join(repoRoot, 'bin/ksm.js');

/** argv that runs `ksm ARGS…` with this Node. */
export function ksmArgv(args: string[]): [string, string[]] {
  return [process.execPath, [ksmBin, ...args]];
}

export function ksm(args: string[], options: RunOptions = {}): RunResult {
  const [command, argv] = ksmArgv(args);
  return run(command, argv, { env: cleanEnv(), timeoutMs: 30_000, ...options });
}

/** argv prefix that runs the rest as user nobody, with no supplementary groups. */
export const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'];
