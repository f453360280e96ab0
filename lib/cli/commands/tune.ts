import { boostKnobs, boostSettings, parseDuration, saveKnobs, validateKnobs, type KnobChanges, type KnobSnapshot } from '../../kernel/tune.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { applyAndReport } from '../knob-changes.js';
import { parseCommandArgs, UsageError, validateInput } from '../usage.js';

/** Command-line flag → knob, for `ksm tune`. */
const FLAGS = {
  'pages-to-scan': 'pages_to_scan',
  'sleep-ms': 'sleep_millisecs',
  advisor: 'advisor_mode',
  'use-zero-pages': 'use_zero_pages',
  'max-page-sharing': 'max_page_sharing',
  'merge-across-nodes': 'merge_across_nodes',
  'smart-scan': 'smart_scan',
  'advisor-max-cpu': 'advisor_max_cpu',
  'advisor-target-scan-time': 'advisor_target_scan_time',
} as const;

const OPTIONS = {
  ...(Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' }])) as Record<keyof typeof FLAGS, { type: 'string' }>),
  boost: { type: 'string' },
  persist: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

function formatCountdown(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}

async function boost(changes: KnobChanges, durationMs: number, context: CliContext, json: boolean): Promise<number> {
  const before = saveKnobs();
  const live = context.stdout.isTTY === true && !json;
  const onTick = (remaining: number): void => {
    if (live) context.stdout.write(`\rboosted; restoring in ${formatCountdown(remaining)} (Ctrl-C restores now) `);
  };
  const aggressive = boostSettings(changes);
  if (!json) context.stdout.write(`boosting for ${formatCountdown(durationMs)}: ${Object.entries(aggressive).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  const completed = await boostKnobs(aggressive, durationMs, { signal: context.signal, onTick });
  const restored = Object.fromEntries(Object.keys(aggressive).map((knob) => [knob, saveKnobs()[knob as keyof KnobSnapshot]]));
  if (json) context.stdout.write(formatJson({ boosted: aggressive, durationMs, completed, restored, before }, false));
  else context.stdout.write(`${live ? '\n' : ''}${completed ? 'boost over' : 'boost ended early'}; restored ${Object.entries(restored).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  return 0;
}

export const tuneCommand: Command = {
  name: 'tune',
  summary: 'set ksmd knobs (validated, safe order, rolled back on failure), boost for a while, persist',
  help: `Usage: ksm tune [KNOB OPTIONS] [--boost DURATION | --persist] [--json]

Validates every value before writing anything, writes in an order the kernel
accepts (advisor off before pages_to_scan; run=2, which unmerges everything, before
merge_across_nodes or max_page_sharing) and puts back what it changed when a write
fails. Needs root.

Knob options:
  --pages-to-scan N             pages ksmd scans per wake-up
  --sleep-ms N                  pause between wake-ups (sleep_millisecs)
  --advisor scan-time|none      let the kernel pick pages_to_scan (6.8+)
  --advisor-max-cpu PERCENT     advisor's CPU ceiling
  --advisor-target-scan-time S  advisor's seconds per full scan
  --use-zero-pages 0|1          merge zero-filled pages with the zero page
  --max-page-sharing N          mappings per KSM page (2 or more; unmerges all first)
  --merge-across-nodes 0|1      NUMA: merge across nodes (unmerges all first)
  --smart-scan 0|1              skip pages that failed to merge before

Other options:
  --boost DURATION  for DURATION (90s, 10m, 1h30m) run ksmd fast (run=1
                    pages_to_scan=4000 sleep_millisecs=10, the knob options given
                    override these), then restore the previous values; Ctrl-C
                    restores at once
  --persist         also apply at every boot: /etc/tmpfiles.d/ksm-preload.conf where
                    systemd runs, else a block in /etc/rc.local; prints what it wrote
  --json            print the changes as JSON
  -h, --help        this text

Examples:
  sudo ksm tune --pages-to-scan 1000 --sleep-ms 20
  sudo ksm tune --advisor scan-time --advisor-max-cpu 30 --persist
  sudo ksm tune --boost 10m
  sudo ksm tune --boost 90s --pages-to-scan 10000 --sleep-ms 5
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, OPTIONS);
    const changes: KnobChanges = {};
    for (const [flag, knob] of Object.entries(FLAGS)) {
      const value = values[flag as keyof typeof FLAGS];
      if (value !== undefined) changes[knob] = value;
    }
    if (values.boost !== undefined) {
      if (values.persist) throw new UsageError('--boost and --persist exclude each other: a boost is temporary');
      const durationMs = validateInput(() => parseDuration(values.boost ?? ''));
      validateInput(() => validateKnobs(changes));
      return boost(changes, durationMs, context, values.json === true);
    }
    if (Object.keys(changes).length === 0) throw new UsageError('nothing to tune: give at least one knob option, or --boost DURATION');
    return applyAndReport(changes, values.persist === true, context, values.json === true);
  },
};
