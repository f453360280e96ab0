import { DemoSession, runDemo, type DemoMode, type DemoResult, type DemoSample } from '../../analysis/demo.js';
import type { CliContext, Command } from '../command.js';
import { formatFields, formatJson, formatMiB, formatTable } from '../format.js';
import { parseCommandArgs, parseWholeNumber, UsageError } from '../usage.js';
import { watch } from '../watch.js';

const BAR_WIDTH = 30;
const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)} %`;

/** `[██████░░░░] 63.0 %  merged 70.2 MiB of 112.0 MiB ideal  12.3 s` */
export function formatProgress(sample: DemoSample): string {
  const fraction = sample.idealBytes > 0 ? Math.min(1, sample.savedBytes / sample.idealBytes) : 0;
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
  return `[${bar}] ${percent(fraction).padStart(7)}  merged ${formatMiB(sample.savedBytes)} of ${formatMiB(sample.idealBytes)} ideal  ${sample.seconds.toFixed(1)} s`;
}

/** The closing report: the saving against the ideal, then one row per worker. */
export function formatDemoResult(result: DemoResult): string {
  const fields: Array<[string, string]> = [
    ['mode', result.mode],
    ['workers', String(result.workers)],
    ['coverage', `${percent(result.coverage)} of anonymous memory advised mergeable`],
    ['ideal', `${formatMiB(result.idealBytes)} among advised pages (${formatMiB(result.idealAllBytes)} if all were advised)`],
    ['saved', `${formatMiB(result.savedBytes)} (${percent(result.fractionOfIdeal)} of ideal)`],
    ['profit', `${formatMiB(result.profitBytes)} (saving minus the kernel's bookkeeping)`],
    ['time to 90 %', result.secondsTo90 === undefined ? 'not reached' : `${result.secondsTo90.toFixed(1)} s`],
    ['time', `${result.seconds.toFixed(1)} s`],
    ['analyze rate', `${(result.analyzeBytesPerSecond / 2 ** 30).toFixed(2)} GiB/s`],
  ];
  const rows = result.perWorker.map((worker) => [
    String(worker.pid),
    formatMiB(worker.mergingBytes),
    worker.coverage === undefined ? 'n/a' : percent(worker.coverage),
  ]);
  const needed = result.merging.possible ? '' : `\nNo real merging shown: ${result.merging.needed}.\nThe ideal above is what KSM would save.\n`;
  return `${formatFields(fields)}\n\n${formatTable(['WORKER', 'MERGING', 'COVERAGE'], rows)}\n${needed}`;
}

/** Follows the session on the terminal until it is done or the user presses Ctrl-C. */
async function followLive(session: DemoSession, context: CliContext): Promise<void> {
  const done = new AbortController();
  const live = { ...context, signal: AbortSignal.any([context.signal, done.signal]) };
  await watch(live, context.stdout.isTTY ? 250 : 1000, false, () => {
    const sample = session.sample();
    if (sample.done) done.abort();
    const text = formatProgress(sample);
    return { text, line: text, json: sample, savedBytes: sample.savedBytes };
  });
}

/** An option out of range (--workers 1, --size 0) is the user's input being wrong. */
function rangeAsUsage(error: unknown): never {
  throw error instanceof RangeError ? new UsageError(error.message) : error;
}

function parseMode(text: string | undefined): DemoMode {
  if (text === undefined) return 'auto';
  if (text !== 'auto' && text !== 'prctl' && text !== 'madvise') throw new UsageError(`--mode must be auto, prctl or madvise, got ${JSON.stringify(text)}`);
  return text;
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run identical workers under the preload library and watch KSM merge them',
  help: `Usage: ksm demo [--workers N] [--mode auto|prctl|madvise] [--size MIB] [--timeout SECONDS] [--json]

Starts N identical Node.js worker processes (default 4) holding the same data
(Buffers, objects, strings, a parsed JSON data set) under the preload library,
measures the ideal saving with \`ksm analyze\`, and shows KSM merging them live:
merged MiB against the ideal, with a progress bar. It ends with a table (ideal,
saved, percent of ideal, profit, time to reach 90 %, and each worker's merged
memory and coverage) once the saving reaches the ideal, settles, or the timeout
passes. The workers are killed on every path.

As root, ksmd is turned on with fast settings for the demo and every KSM knob is
restored afterwards, also on Ctrl-C or error. Without root (and ksmd stopped) or
without KSM, the demo still shows the coverage and the predicted saving, and says
what is needed to see real merging.

Options:
  --workers N        worker processes, 2 to 64 (default 4)
  --mode MODE        how workers opt in: auto (prctl, else madvise), prctl, madvise
  --size MIB         data per worker in MiB (default 32)
  --timeout SECONDS  longest wait for merging (default 60)
  --json             print one JSON object at the end, nothing live
  -h, --help         this text

Examples:
  sudo npx ksm demo
  sudo ksm demo --workers 8 --mode madvise
  sudo ksm demo --json --timeout 30 | jq '{idealBytes, savedBytes}'
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, {
      workers: { type: 'string' },
      mode: { type: 'string' },
      size: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    });
    const options = {
      workers: values.workers === undefined ? undefined : parseWholeNumber('--workers', values.workers),
      mode: parseMode(values.mode),
      workerMiB: values.size === undefined ? undefined : parseWholeNumber('--size', values.size),
      timeoutMs: values.timeout === undefined ? undefined : parseWholeNumber('--timeout', values.timeout) * 1000,
      signal: context.signal,
    };
    if (values.json) {
      const result = await runDemo(options).catch(rangeAsUsage);
      context.stdout.write(formatJson(result, context.stdout.isTTY === true));
      return 0;
    }
    context.stdout.write(`Starting ${options.workers ?? 4} identical workers (mode ${options.mode})…\n`);
    const session = await DemoSession.start(options).catch(rangeAsUsage);
    let result: DemoResult;
    try {
      const analysis = session.analysis;
      context.stdout.write(
        `Ideal saving: ${formatMiB(analysis.idealAdvisedBytes)} of ${formatMiB(analysis.residentAnonymousBytes)} resident anonymous memory ` +
          `(coverage ${percent(analysis.coverage)}, analysed at ${(analysis.bytesPerSecond / 2 ** 30).toFixed(2)} GiB/s)\n\n`,
      );
      if (session.sample().done === false) await followLive(session, context);
    } finally {
      result = await session.finish();
    }
    context.stdout.write(`\n${formatDemoResult(result)}`);
    return 0;
  },
};
