import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');
const outDir = join(root, 'build', 'api-test-dist');
// The public modules of this issue; tsc follows their imports. Compiling only
// these keeps the tests independent of unfinished modules elsewhere in lib/.
const ENTRY_MODULES = ['mark', 'alloc', 'process-merging', 'support', 'process-stats', 'exec'];

/**
 * lib/ compiled to CommonJS for child processes (which run plain node, with
 * flags such as --expose-gc), rebuilt when any lib/*.ts is newer.
 */
export function compiledLib(): string {
  const newestSource = Math.max(...readdirSync(join(root, 'lib')).filter((f) => f.endsWith('.ts')).map((f) => statSync(join(root, 'lib', f)).mtimeMs));
  const stamp = join(outDir, 'mark.js');
  if (!existsSync(stamp) || statSync(stamp).mtimeMs < newestSource) {
    execFileSync(
      process.execPath,
      [
        join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
        ...['--outDir', outDir, '--rootDir', join(root, 'lib'), '--module', 'nodenext', '--moduleResolution', 'nodenext'],
        ...['--target', 'ES2022', '--strict', '--skipLibCheck', '--types', 'node'],
        ...ENTRY_MODULES.map((name) => join(root, 'lib', `${name}.ts`)),
      ],
      { stdio: 'inherit' },
    );
  }
  return outDir;
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
