import type { CliContext } from '../../lib/cli/command.js';

/** A CliContext that keeps what a command writes. */
export function bufferContext(signal: AbortSignal = new AbortController().signal): CliContext & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (text: string) => (out += text), isTTY: false },
    stderr: { write: (text: string) => (err += text) },
    env: {},
    signal,
    out: () => out,
    err: () => err,
  };
}
