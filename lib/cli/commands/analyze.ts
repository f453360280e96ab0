import { analyzeMemory, type MemoryAnalysis } from '../../analysis/analyze.js';
import { allUserPids, cgroupPids } from '../../process/select.js';
import type { CliContext, Command } from '../command.js';
import { formatFields, formatJson, formatMiB, formatTable } from '../format.js';
import { parseCommandArgs, parseWholeNumber, UsageError, validateInput } from '../usage.js';

const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)} %`;

/** The report as text: one row per process, the totals, then the processes that could not be read. */
export function formatAnalysis(analysis: MemoryAnalysis): string {
  const readable = analysis.processes.filter((p) => p.error === undefined || p.residentAnonymousBytes > 0);
  const failed = analysis.processes.filter((p) => p.error !== undefined);
  const rows = readable.map((p) => [
    String(p.pid),
    p.command ?? '?',
    formatMiB(p.residentAnonymousBytes),
    percent(p.coverage),
    formatMiB(p.zeroBytes),
    formatMiB(p.duplicateBytes),
    formatMiB(p.ksmBytes),
  ]);
  const ideal = analysis.ideal;
  const share = (bytes: number): string =>
    analysis.residentAnonymousBytes === 0 ? '' : ` (${percent(bytes / analysis.residentAnonymousBytes)} of it)`;
  const fields: Array<[string, string]> = [
    ['resident anonymous', formatMiB(analysis.residentAnonymousBytes)],
    ['unique', `${formatMiB(analysis.uniqueBytes)} (what remains with every duplicate merged)`],
    ['ideal saving', `${formatMiB(ideal.bytes)}${share(ideal.bytes)}`],
    ['  zero pages', formatMiB(ideal.zeroBytes)],
    ['  within a process', formatMiB(ideal.withinProcessBytes)],
    ['  across processes', formatMiB(ideal.acrossProcessesBytes)],
    ['already merged', analysis.mergedBytes === undefined ? 'n/a (needs root to see physical pages)' : formatMiB(analysis.mergedBytes)],
    ['coverage', `${percent(analysis.coverage)} of anonymous memory advised mergeable`],
    ['ideal among advised', `${formatMiB(analysis.idealAdvisedBytes)} (what ksmd can reach now)`],
    ['advising the rest adds', formatMiB(analysis.idealUnadvisedBytes)],
    ['scan', `${analysis.seconds.toFixed(2)} s, ${(analysis.bytesPerSecond / 2 ** 30).toFixed(2)} GiB/s`],
  ];
  const parts = [
    rows.length > 0 ? formatTable(['PID', 'COMMAND', 'ANONYMOUS', 'ADVISED', 'ZERO', 'DUPLICATE', 'KSM'], rows) : 'No process could be read.',
    formatFields(fields),
  ];
  if (failed.length > 0) {
    parts.push(['Not fully read:', ...failed.map((p) => `  PID ${p.pid}${p.command ? ` (${p.command})` : ''}: ${p.error?.message} [${p.error?.code}]`)].join('\n'));
  }
  return `${parts.join('\n\n')}\n`;
}

function selectPids(positionals: string[], cgroup: string | undefined, all: boolean): number[] {
  const choices = [positionals.length > 0, cgroup !== undefined, all].filter(Boolean).length;
  if (choices !== 1) throw new UsageError('give PIDs, or --cgroup PATH, or --all (exactly one of them)');
  if (all) return allUserPids();
  if (cgroup !== undefined) return validateInput(() => cgroupPids(cgroup));
  return positionals.map((text) => {
    const pid = parseWholeNumber('PID', text);
    if (pid === 0) throw new UsageError('PID 0 is not a process');
    return pid;
  });
}

export const analyzeCommand: Command = {
  name: 'analyze',
  summary: 'predict what KSM could save for some processes, by hashing their memory',
  help: `Usage: ksm analyze (PID… | --cgroup PATH | --all) [--json]

Reads every resident private anonymous page of the processes (through
/proc/PID/pagemap and /proc/PID/mem), hashes it, and counts identical pages. Nothing
is turned on and nothing is written. It reports the resident anonymous memory, what
would remain with every duplicate merged, the ideal saving split into zero pages,
duplicates within a process and duplicates across processes, what KSM has already
merged, the coverage (memory advised mergeable), the ideal among advised pages (what
ksmd can reach now) and what advising the rest would add.

Reading another process's memory needs root, or being its owner with ptrace allowed;
processes that cannot be read are listed with the reason and the rest is reported.
Exit code 0 when at least one process was read, 1 when none was.

Options:
  --cgroup PATH  the processes of a cgroup and its children (under /sys/fs/cgroup,
                 or as /proc/PID/cgroup prints it)
  --all          every process except kernel threads and this one
  --json         print one JSON object (analyzeMemory()'s result)
  -h, --help     this text

Examples:
  sudo ksm analyze $(pgrep -d' ' redis-server)
  sudo ksm analyze --cgroup /system.slice/docker-1a2b3c.scope
  sudo ksm analyze --all --json | jq .ideal
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' }, cgroup: { type: 'string' }, all: { type: 'boolean' } }, true);
    const pids = selectPids(positionals, values.cgroup, values.all === true);
    if (pids.length === 0) {
      context.stderr.write('ksm analyze: no processes to analyse (the cgroup is empty)\n');
      return 1;
    }
    const analysis = await analyzeMemory(pids);
    context.stdout.write(values.json ? formatJson(analysis, context.stdout.isTTY === true) : formatAnalysis(analysis));
    const anyRead = analysis.processes.some((p) => p.error === undefined || p.residentAnonymousBytes > 0);
    return anyRead ? 0 : 1;
  },
};
