/** Where a command writes; the real process streams, or buffers in tests. */
export interface CliOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** What every `ksm` command receives besides its arguments. */
export interface CliContext {
  stdout: CliOutput;
  stderr: CliOutput;
  env: NodeJS.ProcessEnv;
  /** Aborted on SIGINT/SIGTERM, so long-running commands can restore state and stop. */
  signal: AbortSignal;
}

/** One `ksm` subcommand. `run` returns the exit code: 0 ok, 1 failed, 2 usage error. */
export interface Command {
  name: string;
  /** One line for `ksm --help`. */
  summary: string;
  /** The full `ksm NAME --help` text, with examples. */
  help: string;
  run(args: string[], context: CliContext): Promise<number>;
}
