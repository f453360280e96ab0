import { attachProcess, detachProcess, SAME_DOMAIN_WARNING, type AttachMode, type AttachResult } from '../../attach/attach.js';
import { KsmError } from '../../core/errors.js';
import type { CliContext, Command } from '../command.js';
import { formatJson, formatMiB } from '../format.js';
import { parseCommandArgs, parseWholeNumber, UsageError } from '../usage.js';
import { sleep } from '../watch.js';

const OPTIONS = {
  mode: { type: 'string' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
  'timeout-ms': { type: 'string' },
} as const;

type Outcome = { pid: number; ok: true; result: AttachResult } | { pid: number; ok: false; error: { code: string; message: string } };

function parsePids(positionals: string[]): number[] {
  if (positionals.length === 0) throw new UsageError('name at least one PID');
  return positionals.map((text) => {
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`a PID is a whole number above 0, got ${JSON.stringify(text)}`);
    return Number(text);
  });
}

function parseMode(text: string | undefined): AttachMode {
  if (text === undefined) return 'auto';
  if (text !== 'auto' && text !== 'prctl' && text !== 'madvise') throw new UsageError(`--mode is auto, prctl or madvise, got ${JSON.stringify(text)}`);
  return text;
}

function parsePositive(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0) throw new UsageError(`${flag} takes a number above 0, got ${JSON.stringify(text)}`);
  return Number(text);
}

function timeoutOption(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseWholeNumber('--timeout-ms', text);
}

function describeResult(action: 'attach' | 'detach', result: AttachResult): string {
  const who = `${result.pid} (${result.command})`;
  const stopped = `stopped ${(result.stoppedMicroseconds / 1000).toFixed(1)} ms`;
  if (action === 'detach') {
    const what = result.mode === 'prctl' ? 'prctl: merge flag off, everything unmerged' : `madvise: ${result.mappings} mappings unmerged`;
    return `${who}: detached with ${what} (${stopped})`;
  }
  if (result.mode === 'prctl') return `${who}: attached with prctl: the whole process, mappings made later too (${stopped})`;
  const failed = result.failedMappings > 0 ? `, ${result.failedMappings} failed (${result.firstError})` : '';
  const fallback = result.fellBack ? ' (this kernel has no PR_SET_MEMORY_MERGE)' : '';
  return `${who}: attached with madvise${fallback}: ${result.mappings} mappings, ${formatMiB(result.bytes)}${failed} (${stopped}); mappings made later are NOT covered: repeat with --watch SECONDS`;
}

async function applyAll(action: 'attach' | 'detach', pids: number[], options: { mode: AttachMode; force: boolean; timeoutMs?: number | undefined; signal: AbortSignal }): Promise<Outcome[]> {
  const apply = action === 'attach' ? attachProcess : detachProcess;
  const outcomes: Outcome[] = [];
  for (const pid of pids) {
    try {
      const { timeoutMs, ...rest } = options;
      outcomes.push({ pid, ok: true, result: await apply(pid, timeoutMs === undefined ? rest : { ...rest, timeoutMs }) });
    } catch (error) {
      if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message);
      if (!(error instanceof KsmError)) throw error;
      outcomes.push({ pid, ok: false, error: { code: error.code, message: error.message } });
    }
  }
  return outcomes;
}

function report(action: 'attach' | 'detach', outcomes: Outcome[], json: boolean, context: CliContext): number {
  if (json) {
    const processes = outcomes.map((o) => (o.ok ? { ok: true, ...o.result } : o));
    context.stdout.write(formatJson({ action, ...(action === 'attach' ? { warning: SAME_DOMAIN_WARNING } : {}), processes }, context.stdout.isTTY === true));
  } else {
    for (const o of outcomes) {
      if (o.ok) context.stdout.write(`${describeResult(action, o.result)}\n`);
      else context.stderr.write(`ksm ${action}: ${o.error.message}\n`);
    }
  }
  return outcomes.every((o) => o.ok) ? 0 : 1;
}

export const attachCommand: Command = {
  name: 'attach',
  summary: 'make running processes mergeable without restarting them (ptrace)',
  help: `Usage: ksm attach PID... [--mode auto|prctl|madvise] [--watch SECONDS] [--force] [--json]

Makes the memory of running processes mergeable, without restarting them. One
thread of each process is stopped for a moment under ptrace and runs the call
itself; then every register is put back and it carries on.
  prctl    prctl(PR_SET_MEMORY_MERGE, 1): the whole process, mappings made later
           too (Linux 6.4+). \`auto\` (the default) uses it where the kernel has it.
  madvise  madvise(MADV_MERGEABLE) over each whole private anonymous mapping the
           process has now (no shared, file-backed or stack mappings). Mappings
           made later are NOT covered: --watch SECONDS repeats it.
ksmd must run too (\`sudo ksm enable\`). Undo with \`ksm detach\`.

Merging is a side channel between the merged processes: attach only processes of
one security domain. Refused: this process, traced processes; without --force also
setuid or privileged processes, other users' processes (without the right to trace
them), kernel threads and processes under a seccomp filter. Tracing needs the same
user (and Yama's ptrace_scope 0) or root / CAP_SYS_PTRACE.

Options:
  --mode MODE        auto (default), prctl or madvise
  --watch SECONDS    attach again every SECONDS until Ctrl-C (new mappings in madvise mode)
  --force            attach even where the checks above refuse
  --timeout-ms N     the longest a thread stays stopped (default 5000)
  --json             print {action, warning, processes: [...]} (one object per round with --watch)
  -h, --help         this text

Exit status: 0 every process attached, 1 one failed, 2 usage error.

Examples:
  sudo ksm attach $(pidof redis-server)
  ksm attach 1234 --mode madvise --watch 30
  ksm attach 1234 --json | jq '.processes[0].mode'
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, { ...OPTIONS, watch: { type: 'string' } }, true);
    const pids = parsePids(positionals);
    const mode = parseMode(values.mode);
    const watchSeconds = parsePositive('--watch', values.watch);
    const timeoutMs = timeoutOption(values['timeout-ms']);
    const options = { mode, force: values.force === true, timeoutMs, signal: context.signal };
    context.stderr.write(`warning: ${SAME_DOMAIN_WARNING}\n`);
    let code = 0;
    do {
      const outcomes = await applyAll('attach', pids, options);
      code = Math.max(code, report('attach', outcomes, values.json === true, context));
      if (watchSeconds === undefined) break;
      await sleep(watchSeconds * 1000, context.signal);
    } while (!context.signal.aborted);
    return code;
  },
};

export const detachCommand: Command = {
  name: 'detach',
  summary: 'undo ksm attach: unmerge and unmark running processes (ptrace)',
  help: `Usage: ksm detach PID... [--mode auto|prctl|madvise] [--force] [--json]

Undoes \`ksm attach\` the same way, inside the running process: with
prctl(PR_SET_MEMORY_MERGE, 0) when the process has the merge flag (this unmerges
and unmarks every mapping, madvised ones too), else with madvise(MADV_UNMERGEABLE)
over the mappings attach marks. Merged pages are copied back: that needs free memory.

Options:
  --mode MODE        auto (default: whichever the process has), prctl or madvise
  --force            detach even where attach's checks refuse
  --timeout-ms N     the longest a thread stays stopped (default 5000)
  --json             print {action, processes: [...]}
  -h, --help         this text

Exit status: 0 every process detached, 1 one failed, 2 usage error.

Examples:
  sudo ksm detach $(pidof redis-server)
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, true);
    const pids = parsePids(positionals);
    const options = { mode: parseMode(values.mode), force: values.force === true, timeoutMs: timeoutOption(values['timeout-ms']), signal: context.signal };
    return report('detach', await applyAll('detach', pids, options), values.json === true, context);
  },
};
