import type { CliContext } from './command.js';
import { formatMiB, sparkline } from './format.js';
import { UsageError } from './usage.js';

/** One sample of a watched command: the text to show and the object --json prints. */
export interface WatchFrame {
  text: string;
  /** The sample in one line, for logs and pipes. */
  line: string;
  json: unknown;
  /** The figure the sparkline follows (saved bytes). */
  savedBytes: number;
}

/** How many samples the sparkline keeps. */
const HISTORY = 60;

/** Reads `--watch [seconds]`: parseArgs gives the flag, the seconds may follow as a positional. */
export function watchInterval(watch: boolean | undefined, positionals: string[]): number | undefined {
  if (!watch) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    return undefined;
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
  const text = positionals[0] ?? '2';
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0) {
    throw new UsageError(`--watch takes an interval in seconds greater than 0, got ${JSON.stringify(text)}`);
  }
  return Number(text) * 1000;
}

/**
 * Samples until the context's signal aborts (Ctrl-C). On a terminal the view is
 * redrawn in place with a sparkline of saved MiB; otherwise each sample is one
 * line (one JSON object per line with --json).
 */
export async function watch(context: CliContext, intervalMs: number, json: boolean, sample: () => WatchFrame): Promise<number> {
  const live = context.stdout.isTTY === true && !json;
  const history: number[] = [];
  let drawnLines = 0;
  if (live) context.stdout.write('\x1b[?25l');
  try {
    while (!context.signal.aborted) {
      const frame = sample();
      if (json) {
        context.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...(frame.json as object) })}\n`);
      } else if (live) {
        history.push(frame.savedBytes);
        if (history.length > HISTORY) history.shift();
        const lines = `${frame.text}\n\nsaved ${sparkline(history)} ${formatMiB(frame.savedBytes)}   (every ${intervalMs / 1000} s, Ctrl-C to stop)`
          .split('\n')
          .map((line) => fitLine(line, context.stdout.columns ?? 80));
        context.stdout.write(`${drawnLines > 0 ? `\x1b[${drawnLines}A\r` : ''}\x1b[J${lines.join('\n')}\n`);
        drawnLines = lines.length;
      } else {
        context.stdout.write(`${new Date().toISOString()} ${frame.line}\n`);
      }
      await sleep(intervalMs, context.signal);
    }
  } finally {
    if (live) context.stdout.write('\x1b[?25h');
  }
  return 0;
}

/** Cut to the terminal's width: a wrapped line would throw off the cursor-up count of the next redraw. */
function fitLine(line: string, columns: number): string {
  return line.length < columns ? line : `${line.slice(0, Math.max(0, columns - 2))}…`;
}

/** Resolves after `ms`, or at once when `signal` aborts (already or meanwhile). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // An abort that came before the wait ends it at once, not one interval later.
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
