import { mergeWarnings, type MergeWarning } from '../../diagnosis/doctor.js';
import { systemKsmStats, type SystemKsmStats } from '../../kernel/system-stats.js';
import type { CliContext, Command } from '../command.js';
import { formatFields, formatJson, formatMiB } from '../format.js';
import { parseCommandArgs } from '../usage.js';
import { watch, watchInterval } from '../watch.js';

const RUN_STATES: Record<string, string> = {
  '0': 'stopped (run=0): nothing new merges',
  '1': 'running (run=1)',
  '2': 'stopped and unmerged (run=2)',
};

/** Keeps the knob lines, after their 15-column label, within 80 columns. */
const KNOB_LINE_WIDTH = 64;

function wrapWords(words: readonly string[], width: number): string[] {
  const lines: string[] = [];
  for (const word of words) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

/** The status report as text: ksmd, savings in MiB, knobs, and warnings. */
export function formatStatus(stats: SystemKsmStats, warnings: readonly MergeWarning[]): string {
  if (!stats.available) return `KSM is not available: ${stats.root} does not exist\n${formatWarnings(warnings)}`;
  const { counters, knobs } = stats;
  const fields: Array<[string, string]> = [
    ['ksmd', RUN_STATES[knobs.run ?? ''] ?? `run=${knobs.run ?? 'unknown'}`],
    ['saved', `${formatMiB(stats.savedBytes)} (pages_sharing ${counters.pages_sharing ?? 'n/a'} × ${stats.pageSize / 1024} KiB)`],
    ['sharing ratio', stats.sharingRatio === undefined ? 'n/a (nothing shared)' : `${stats.sharingRatio.toFixed(2)} mappings per shared page`],
    ['profit', `${formatMiB(stats.profitBytes)}${stats.profitSource === 'estimate' ? ' (estimated: this kernel has no general_profit)' : ''}`],
    ['shared pages', `${formatMiB(stats.bytes.pages_shared)} (${counters.pages_shared ?? 'n/a'} pages)`],
    ['unshared', `${formatMiB(stats.bytes.pages_unshared)} (scanned, no twin yet)`],
  ];
  if (counters.ksm_zero_pages !== undefined) fields.push(['zero pages', `${formatMiB(stats.bytes.ksm_zero_pages)} (${counters.ksm_zero_pages} pages)`]);
  const scanTime = stats.estimatedFullScanSeconds === undefined ? '' : `, about ${stats.estimatedFullScanSeconds.toFixed(1)} s per full scan`;
  fields.push(['full scans', `${counters.full_scans ?? 'n/a'}${scanTime}`]);
  const knobText = Object.entries(knobs)
    .filter(([knob]) => knob !== 'run')
    .map(([knob, value]) => `${knob}=${value}`);
  wrapWords(knobText, KNOB_LINE_WIDTH).forEach((line, index) => fields.push([index === 0 ? 'knobs' : '', line]));
  return `${formatFields(fields)}\n${formatWarnings(warnings)}`;
}

function formatWarnings(warnings: readonly MergeWarning[]): string {
  return warnings.map((warning) => `warning: ${warning.message}\n  fix: ${warning.fix}\n`).join('');
}

function statusLine(stats: SystemKsmStats): string {
  const ratio = stats.sharingRatio === undefined ? 'n/a' : stats.sharingRatio.toFixed(2);
  return `run=${stats.knobs.run ?? '?'} saved=${formatMiB(stats.savedBytes)} profit=${formatMiB(stats.profitBytes)} ratio=${ratio} full_scans=${stats.counters.full_scans ?? 'n/a'}`;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'whether ksmd runs, memory saved in MiB, the knobs, and why nothing merges',
  help: `Usage: ksm status [--json] [--watch [SECONDS]]

Shows whether ksmd runs, the memory KSM saves (pages_sharing × page size), the
sharing ratio, the signed profit (savings minus the kernel's bookkeeping), zero
pages, full scans and the knobs, in MiB rather than pages. Warns about what keeps
memory from merging: ksmd stopped, no process opted in, transparent huge pages
set to always.

Options:
  --json             print one JSON object (systemKsmStats() plus warnings)
  --watch [SECONDS]  sample every SECONDS (default 2) until Ctrl-C; on a terminal the
                     view is redrawn with a sparkline of saved MiB, otherwise one line
                     (or one JSON object) per sample
  -h, --help         this text

Examples:
  ksm status
  ksm status --json | jq .savedBytes
  ksm status --watch 5
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' }, watch: { type: 'boolean' } }, true);
    const interval = watchInterval(values.watch, positionals);
    const sample = (): { stats: SystemKsmStats; warnings: MergeWarning[] } => {
      const stats = systemKsmStats();
      return { stats, warnings: mergeWarnings(stats) };
    };
    if (interval !== undefined) {
      return watch(context, interval, values.json === true, () => {
        const { stats, warnings } = sample();
        return { text: formatStatus(stats, warnings).trimEnd(), line: statusLine(stats), json: { ...stats, warnings }, savedBytes: stats.savedBytes ?? 0 };
      });
    }
    const { stats, warnings } = sample();
    context.stdout.write(values.json ? formatJson({ ...stats, warnings }, context.stdout.isTTY === true) : formatStatus(stats, warnings));
    return 0;
  },
};
