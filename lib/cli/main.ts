import type { CliContext, Command } from './command.js';
import { analyzeCommand } from './commands/analyze.js';
import { attachCommand, detachCommand } from './commands/attach.js';
import { autotuneCommand } from './commands/autotune.js';
import { demoCommand } from './commands/demo.js';
import { disableCommand, enableCommand } from './commands/enable.js';
import { doctorCommand } from './commands/doctor.js';
import { exporterCommand } from './commands/exporter.js';
import { installLibCommand } from './commands/install-lib.js';
import { runCommand } from './commands/run.js';
import { snippetCommand } from './commands/snippet.js';
import { statusCommand } from './commands/status.js';
import { topCommand } from './commands/top.js';
import { tuneCommand } from './commands/tune.js';
import { whereCommand } from './commands/where.js';
import { UsageError } from './usage.js';

/** Every subcommand, in the order `ksm --help` lists them. */
export const commands: readonly Command[] = [
  statusCommand,
  topCommand,
  enableCommand,
  disableCommand,
  tuneCommand,
  doctorCommand,
  runCommand,
  attachCommand,
  detachCommand,
  whereCommand,
  installLibCommand,
  snippetCommand,
  analyzeCommand,
  demoCommand,
  exporterCommand,
  autotuneCommand,
];

function overview(): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  return [
    'Usage: ksm COMMAND [OPTIONS]',
    '',
    'Turn Linux KSM (kernel samepage merging) on, run programs with merging, and see what it saves.',
    '',
    'Commands:',
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    'Run `ksm COMMAND --help` for the options and examples of one command.',
    'A first session: ksm doctor; sudo ksm enable; ksm run -- node server.js; ksm status',
    '',
  ].join('\n');
}

/**
 * Runs `ksm ARGS…` and resolves to the exit code: 0 ok, 1 failed, 2 usage error.
 * Without a context it uses the process's streams and environment and ends
 * long-running commands on SIGINT/SIGTERM.
 */
export async function main(args: string[], context?: CliContext): Promise<number> {
  if (context) return dispatch(args, context);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => controller.abort(signal);
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    return await dispatch(args, { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal });
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}

async function dispatch(args: string[], context: CliContext): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    const command = commands.find((candidate) => candidate.name === topic);
    if (name === undefined) {
      context.stderr.write(overview());
      return 2;
    }
    context.stdout.write(command ? command.help : overview());
    return 0;
  }
  const command = commands.find((candidate) => candidate.name === name);
  if (!command) {
    context.stderr.write(`ksm: unknown command ${JSON.stringify(name)}\nRun \`ksm --help\` for the list of commands.\n`);
    return 2;
  }
  // Flags after `--` belong to the program `ksm run` starts.
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    context.stdout.write(command.help);
    return 0;
  }
  try {
    return await command.run(rest, context);
  } catch (error) {
    const usage = error instanceof UsageError;
    const message = error instanceof Error ? error.message : String(error);
    context.stderr.write(`ksm: ${message}\nRun \`ksm ${command.name} --help\` for usage.\n`);
    return usage ? 2 : 1;
  }
}
