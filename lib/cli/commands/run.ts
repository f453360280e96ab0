import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { ksmAddon } from '../../core/capability.js';
import { MODES } from '../../core/facts.js';
import { execInPlace } from '../../marking/exec.js';
import { launcher, preloadLibrary } from '../../core/paths.js';
import type { CliContext, Command } from '../command.js';
import { parseCommandArgs, UsageError } from '../usage.js';

/** Splits `[OPTIONS] [--] CMD ARGS…`: the command's own flags end at `--` or at the first word that is not an option. */
function splitCommandLine(args: string[]): { own: string[]; command: string[] } {
  const dashes = args.indexOf('--');
  if (dashes !== -1) return { own: args.slice(0, dashes), command: args.slice(dashes + 1) };
  let index = 0;
  while (index < args.length && args[index]?.startsWith('-')) index += args[index] === '--mode' ? 2 : 1;
  return { own: args.slice(0, index), command: args.slice(index) };
}

/** LD_PRELOAD with the library first, as ksm-exec sets it, so that its hooks sit in front
 * of any allocator preloaded after it. The loader splits entries at spaces and colons. */
function preloadFirst(library: string, old: string | undefined): string {
  const others = (old ?? '').split(/[ :]+/).filter((entry) => entry !== '' && entry !== library);
  return [library, ...others].join(':');
}

/**
 * Without the addon (no execve) or the launcher: start CMD as a child with the
 * library preloaded, pass it the terminal, forward SIGINT/SIGTERM and return its exit code.
 */
function spawnWithPreload(command: string[], mode: string, context: CliContext): Promise<number> {
  const library = preloadLibrary();
  if (library.path === undefined) throw new Error(`cannot run with merging: ${library.reason}`);
  const env = { ...context.env, LD_PRELOAD: preloadFirst(library.path, context.env.LD_PRELOAD), KSM_PRELOAD_MODE: mode };
  const [file = '', ...args] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: 'inherit' });
    const forward = (): void => {
      child.kill(typeof context.signal.reason === 'string' ? (context.signal.reason as NodeJS.Signals) : 'SIGTERM');
    };
    context.signal.addEventListener('abort', forward, { once: true });
    child.on('error', (error: NodeJS.ErrnoException) => {
      context.signal.removeEventListener('abort', forward);
      if (error.code === 'ENOENT') resolve(commandNotFound(file, context));
      else reject(error);
    });
    child.on('exit', (code, signal) => {
      context.signal.removeEventListener('abort', forward);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}

function commandNotFound(file: string, context: CliContext): number {
  context.stderr.write(`ksm: ${file}: command not found\n`);
  return 127;
}

export const runCommand: Command = {
  name: 'run',
  summary: 'run a program with KSM merging on, exec\'d in place (no Node parent left)',
  help: `Usage: ksm run [--mode auto|prctl|madvise|off] [--] CMD [ARGS…]

Starts CMD with its memory given to KSM. \`ksm\` replaces itself with the ksm-exec
launcher, which sets prctl(PR_SET_MEMORY_MERGE) or preloads libksm_preload.so and
execs CMD: CMD keeps ksm's pid and no Node process stays behind. Without the
native addon or launcher it starts CMD as a child with LD_PRELOAD instead, and
exits with its exit code. Exit 127: CMD not found; 126: not executable.
ksmd must be running to merge anything (ksm enable).

Options:
  --mode MODE  auto (default: prctl where a probe child shows the kernel keeps it
               across exec, else the library), prctl, madvise (the library marks
               memory), off
  -h, --help   this text (options after \`--\` belong to CMD)

Examples:
  ksm run -- node server.js
  ksm run --mode madvise -- redis-server /etc/redis.conf
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { own, command } = splitCommandLine(args);
    const { values } = parseCommandArgs(own, { mode: { type: 'string' } });
    const mode = values.mode ?? 'auto';
    if (!(MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode takes ${MODES.join(', ')}, got ${JSON.stringify(mode)}`);
    if (command.length === 0) throw new UsageError('which program? ksm run [--mode M] -- CMD ARGS…');
    const exec = launcher();
    if (exec.path !== undefined && ksmAddon().addon !== undefined) {
      execInPlace(exec.path, ['--mode', mode, '--', ...command], context.env);
    }
    return spawnWithPreload(command, mode, context);
  },
};
