import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const distDir = join(root, 'dist', 'cjs');
// The modules behind the public functions these tests call, internals included.
const ENTRY_MODULES = ['marking/mark', 'marking/alloc', 'marking/process-merging', 'diagnosis/support', 'process/process-stats', 'marking/exec'];

/**
 * The CommonJS build of lib/ (from `npm run build`, which `npm test` runs first),
 * for child processes that run plain node with flags such as --expose-gc.
 */
export function compiledLib(): string {
  if (!existsSync(join(distDir, 'index.js'))) throw new Error(`${distDir} is missing: run \`npm run build\` first`);
  return distDir;
}

/** The preamble of every child script: `lib` holds the compiled public modules. */
function preamble(): string {
  const dir = JSON.stringify(compiledLib());
  const modules = ENTRY_MODULES.map((name) => `...require(require('node:path').join(${dir}, '${name}.js'))`).join(', ');
  return `const lib = { ${modules} };\n`;
}

/** Options of runNode(). */
export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin. */
  input?: string;
  timeoutMs?: number;
  /** Run as this user and group (needs root). */
  uid?: number;
  gid?: number;
}

/** Runs a script in a fresh `node --expose-gc` with `lib` in scope; waits for it. */
export function runNode(script: string, { env = {}, input, timeoutMs = 60_000, uid, gid }: RunOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--expose-gc', '-e', preamble() + script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: timeoutMs,
    ...(input === undefined ? {} : { input }),
    ...(uid === undefined ? {} : { uid }),
    ...(gid === undefined ? {} : { gid }),
  });
}

/** Starts such a script without waiting; it keeps running until killed or done. */
export function startNode(script: string, env: NodeJS.ProcessEnv = {}) {
  return spawn(process.execPath, ['--expose-gc', '-e', preamble() + script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The last stdout line of a finished child, parsed as JSON; fails with its stderr otherwise. */
export function jsonResult<T>(result: SpawnSyncReturns<string>): T {
  if (result.status !== 0) throw new Error(`child exited with ${result.status ?? result.signal}: ${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? 'null') as T;
}
