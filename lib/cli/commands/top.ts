import { groupByCgroup, ksmProcesses, type CgroupKsmRow, type KsmProcessList, type ProcessKsmRow } from '../../process/top.js';
import type { CliContext, Command } from '../command.js';
import { formatJson, formatMiB, formatTable } from '../format.js';
import { parseCommandArgs, parseWholeNumber, UsageError } from '../usage.js';
import { watch, watchInterval } from '../watch.js';

type View = { by: 'process'; rows: ProcessKsmRow[] } | { by: 'cgroup'; rows: CgroupKsmRow[] };

function formatView(view: View, list: KsmProcessList, width: number): string {
  const table =
    view.by === 'process'
      ? formatTable(
          ['PID', 'MERGING', 'SAVED', 'KERNEL-PROFIT', 'OPT-IN', 'COMMAND'],
          view.rows.map((row) => [String(row.pid), formatMiB(row.mergingBytes), formatMiB(row.savedBytes), formatMiB(row.profitBytes), row.methods.join('+'), row.command]),
        )
      : formatTable(
          ['NAME', 'PROCS', 'MERGING', 'SAVED', 'KERNEL-PROFIT', 'CGROUP'],
          view.rows.map((row) => [row.name, String(row.processes), formatMiB(row.mergingBytes), formatMiB(row.savedBytes), formatMiB(row.profitBytes), row.cgroup === row.name ? '' : row.cgroup]),
        );
  const lines = table.split('\n').map((line) => (line.length > width ? `${line.slice(0, width - 1)}…` : line));
  const empty = view.rows.length === 0 ? ['(no process merges or has opted in)'] : [];
  return [...lines, ...empty, summary(list), savingNote(list)].join('\n');
}

function summary(list: KsmProcessList): string {
  const unreadable = list.unreadable.count > 0 ? `; ${list.unreadable.count} unreadable (${list.unreadable.reason}; run as root to include them)` : '';
  const saved = list.fairShare.available ? `, saving ${formatMiB(totalSaved(list))}` : '';
  return `${list.processes.length} of ${list.scanned - list.unreadable.count} readable processes use KSM${saved}${unreadable}`;
}

function savingNote(list: KsmProcessList): string {
  const kernel = "KERNEL-PROFIT is the kernel's ksm_process_profit, which counts a page shared by k processes k times";
  return list.fairShare.available
    ? `SAVED credits each of k mappings of a shared page (k−1)/k of it, so it adds up to what the host saves; ${kernel}`
    : `SAVED unavailable: ${list.fairShare.reason}; ${kernel}`;
}

function totalSaved(list: KsmProcessList): number {
  return list.processes.reduce((sum, row) => sum + (row.savedBytes ?? 0), 0);
}

export const topCommand: Command = {
  name: 'top',
  summary: 'processes (or cgroups: containers, services) by memory merged, with how each opted in',
  help: `Usage: ksm top [--by process|cgroup] [--limit N] [--json] [--watch [SECONDS]]

Lists the processes that merge memory or opted in, most merged first: pid, merged
MiB (ksm_merging_pages), the saving, the kernel's profit estimate, and how each opted
in: prctl (ksm_merge_any), madvise, or preload (LD_PRELOAD names libksm_preload.so).
Processes whose files this user may not read are counted and reported.

SAVED is a fair share: a page that k processes map saves k−1 pages, so each is
credited (k−1)/k of it, and the rows add up to what the host saves. It needs root
(page frame numbers from /proc/PID/pagemap and /proc/kpagecount). KERNEL-PROFIT is
the kernel's ksm_process_profit, which credits every one of the k a whole page.
With --by cgroup, containers and pods are named from their engine's metadata
(podman, docker, containerd, CRI-O, Kubernetes), systemd units by their unit.

Options:
  --by cgroup        sum per cgroup (per container or systemd service) instead
  --limit N          show the first N rows only
  --json             print JSON (all rows, plus scanned and unreadable counts)
  --watch [SECONDS]  refresh every SECONDS (default 2) until Ctrl-C
  -h, --help         this text

Examples:
  sudo ksm top
  sudo ksm top --by cgroup
  sudo ksm top --watch 5 --limit 20
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(
      args,
      { by: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, watch: { type: 'boolean' } },
      true,
    );
    const by = values.by ?? 'process';
    if (by !== 'process' && by !== 'cgroup') throw new UsageError(`--by takes process or cgroup, got ${JSON.stringify(by)}`);
    const limit = values.limit === undefined ? Infinity : parseWholeNumber('--limit', values.limit);
    const interval = watchInterval(values.watch, positionals);
    const sample = (): { view: View; list: KsmProcessList; json: unknown } => {
      const list = ksmProcesses();
      const view: View = by === 'cgroup' ? { by, rows: groupByCgroup(list.processes).slice(0, limit) } : { by, rows: list.processes.slice(0, limit) };
      const json = by === 'cgroup' ? { cgroups: view.rows, scanned: list.scanned, unreadable: list.unreadable, fairShare: list.fairShare } : { ...list, processes: view.rows };
      return { view, list, json };
    };
    const width = context.stdout.isTTY ? (context.stdout.columns ?? 120) : Infinity;
    if (interval !== undefined) {
      return watch(context, interval, values.json === true, () => {
        const { view, list, json } = sample();
        const merged = list.processes.reduce((sum, row) => sum + row.mergingBytes, 0);
        const saved = list.fairShare.available ? totalSaved(list) : merged;
        return { text: formatView(view, list, width), line: `merging=${formatMiB(merged)} ${summary(list)}`, json, savedBytes: saved };
      });
    }
    const { view, list, json } = sample();
    context.stdout.write(values.json ? formatJson(json, context.stdout.isTTY === true) : `${formatView(view, list, width)}\n`);
    return 0;
  },
};
