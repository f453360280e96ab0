import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Bad command-line input: `ksm` prints it with a pointer to --help and exits with 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The options every command accepts. */
const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** What parseCommandArgs() returns for a command's options. */
export type ParsedArgs<T extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: typeof COMMON_OPTIONS & T; allowPositionals: true; strict: true }>
>;

/**
 * node:util parseArgs in strict mode, with --help added and every parse failure
 * turned into a UsageError.
 */
export function parseCommandArgs<T extends Options>(args: string[], options: T, allowPositionals = false): ParsedArgs<T> {
  try {
    return parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split('\n')[0] : String(error));
  }
}

/** Runs an API validator; its TypeError/RangeError is the user's input being wrong, so a UsageError. */
export function validateInput<T>(validate: () => T): T {
  try {
    return validate();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message);
    throw error;
  }
}

/** A whole number option, or a UsageError naming the flag. */
export function parseWholeNumber(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} needs a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
