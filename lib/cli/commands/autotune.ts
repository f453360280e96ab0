import { autotuneSettings, runAutotune, type AutotuneLogEntry } from '../../fleet/autotune.js';
import { autotuneLogPath } from '../../fleet/autotune-log.js';
import type { AutotuneSettings } from '../../fleet/autotune-policy.js';
import { DEFAULT_UNIT_DIR, installAutotuneUnit } from '../../fleet/autotune-unit.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { parseCommandArgs, UsageError, validateInput } from '../usage.js';

/** Command-line flag → setting, with the factor from the flag's unit to the setting's. */
const SETTING_FLAGS = {
  interval: ['intervalSeconds', 1],
  'max-cpu': ['maxCpuPercent', 1],
  'threshold-percent': ['thresholdPercent', 1],
  'threshold-mib': ['thresholdMinBytes', 2 ** 20],
  pressure: ['pressurePercent', 1],
  'boost-scan-time': ['boostScanSeconds', 1],
  'relax-scan-time': ['relaxScanSeconds', 1],
  recheck: ['recheckSeconds', 1],
} as const satisfies Record<string, readonly [keyof AutotuneSettings, number]>;

const OPTIONS = {
  ...(Object.fromEntries(Object.keys(SETTING_FLAGS).map((flag) => [flag, { type: 'string' }])) as Record<keyof typeof SETTING_FLAGS, { type: 'string' }>),
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  state: { type: 'string' },
  install: { type: 'boolean' },
  prefix: { type: 'string' },
} as const;

/** sd-daemon(3) priorities: journald files a line starting with <N> under priority N. */
const PRIORITY: Record<string, number> = { throttle: 4, restore: 6 };
const NOTICE = 5;

function formatEntry(entry: AutotuneLogEntry, journal: boolean): string {
  const knobs = Object.entries(entry.knobs).map(([knob, value]) => `${knob}=${value}`).join(' ');
  const prefix = journal ? `<${PRIORITY[entry.action] ?? NOTICE}>` : '';
  return `${prefix}${entry.dryRun ? '[dry run] ' : ''}${entry.action}: ${entry.reason}${knobs ? ` [${knobs}]` : ''}\n`;
}

function parseNumber(flag: string, text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`--${flag} needs a number, got ${JSON.stringify(text)}`);
  return Number(text);
}

export const autotuneCommand: Command = {
  name: 'autotune',
  summary: 'a daemon that runs ksmd while it saves memory, paced to a CPU budget; --install writes its systemd unit',
  help: `Usage: ksm autotune [OPTIONS]
       ksm autotune --install [--prefix DIR] [OPTIONS]

Every interval it reads MemAvailable, PSI memory pressure, ksmd's counters and CPU
time (/proc/PID/stat of the ksmd thread) and, per process, mergeable memory
(smaps) against the pages ksmd has looked at (ksm_stat rmap items). Then:
  - ksmd runs only while memory is short: MemAvailable below
    max(MemTotal x threshold-percent, threshold-mib), or PSI memory pressure
    (some avg10) at or above --pressure; otherwise run=0;
  - it boosts while mergeable pages wait for ksmd's first look or full scans
    keep adding savings, as long as they are 5 % of the mergeable memory or more
    (less is left to a relaxed scan), relaxes when a full scan adds none, and
    stops (run=0, merged pages stay merged) when a relaxed scan adds no profit;
    it looks again when new mergeable memory appears, and every --recheck seconds;
  - ksmd's CPU stays within --max-cpu on average: the pace is set from ksmd's
    measured cost per page, and ksmd pauses while it is over budget;
  - where the kernel has the scan-time advisor (6.8+), it steers the advisor
    (advisor_target_scan_time, advisor_max_cpu, advisor_max_pages_to_scan)
    instead of pages_to_scan, which the kernel then refuses.
Each decision is one line with its reason (with <N> priorities under journald),
and one JSON line in the state file for the dashboard. SIGTERM or SIGINT puts every
knob back as it was at the start. Needs root.

Options:
  --interval SECONDS          between readings (default 1)
  --max-cpu PERCENT           ksmd's CPU budget, percent of one CPU (default 20)
  --threshold-percent P       memory is short below MemTotal x P % available (default 20)
  --threshold-mib MIB         ... or below MIB available, whichever is larger (default 2048)
  --pressure PERCENT          PSI memory some avg10 that counts as short (default 10)
  --boost-scan-time SECONDS   seconds per full scan while boosting (default 1)
  --relax-scan-time SECONDS   seconds per full scan while relaxing (default 60)
  --recheck SECONDS           after stopping, look again this often (default 600)
  --dry-run                   decide and log, write no knob (nor the state file
                              unless --state or KSM_AUTOTUNE_LOG names one)
  --json                      print each decision as a JSON line
  --state FILE                the state file (default $KSM_AUTOTUNE_LOG, else
                              /run/ksm-preload/autotune.jsonl; kept under 1000 lines)
  --install                   write the systemd unit ksm-autotune.service instead of
                              running; the other options go into its ExecStart
  --prefix DIR                folder for --install (default ${DEFAULT_UNIT_DIR})
  -h, --help                  this text

Examples:
  sudo ksm autotune --dry-run
  sudo ksm autotune --max-cpu 10 --interval 10
  sudo ksm autotune --threshold-percent 100     # run whenever there is something to merge
  sudo ksm autotune --install --max-cpu 10 && sudo systemctl daemon-reload && sudo systemctl enable --now ksm-autotune
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, OPTIONS);
    const overrides: Partial<AutotuneSettings> = {};
    const passOn: string[] = [];
    for (const [flag, [setting, unit]] of Object.entries(SETTING_FLAGS)) {
      const text = values[flag as keyof typeof SETTING_FLAGS];
      if (text === undefined) continue;
      overrides[setting] = parseNumber(flag, text) * unit;
      passOn.push(`--${flag}`, text);
    }
    const settings = validateInput(() => autotuneSettings(overrides));
    const json = values.json === true;
    if (values.prefix !== undefined && !values.install) throw new UsageError('--prefix is for --install');
    if (values.install) {
      if (values['dry-run']) throw new UsageError('--install and --dry-run exclude each other');
      if (values.state !== undefined) passOn.push('--state', values.state);
      const { file, text } = validateInput(() => installAutotuneUnit(values.prefix ?? DEFAULT_UNIT_DIR, passOn));
      if (json) context.stdout.write(formatJson({ file, text }, context.stdout.isTTY === true));
      else context.stdout.write(`wrote ${file}\nstart it with: systemctl daemon-reload && systemctl enable --now ksm-autotune\n`);
      return 0;
    }
    const dryRun = values['dry-run'] === true;
    const stateFile = values.state ?? (dryRun && !context.env.KSM_AUTOTUNE_LOG ? undefined : autotuneLogPath(context.env));
    // systemd says the output goes to the journal by setting JOURNAL_STREAM.
    const journal = !json && context.env.JOURNAL_STREAM !== undefined;
    const summary = await runAutotune({
      settings,
      dryRun,
      stateFile,
      signal: context.signal,
      onDecision: (entry) => context.stdout.write(json ? `${JSON.stringify(entry)}\n` : formatEntry(entry, journal)),
    });
    if (!json && summary.ticks === 0) context.stderr.write('autotune ended before its first reading\n');
    return 0;
  },
};
