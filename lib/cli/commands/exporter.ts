import { autotuneLogPath } from '../../fleet/autotune-log.js';
import { DEFAULT_EXPORTER_PORT, startExporter } from '../../fleet/exporter.js';
import type { MetricNames } from '../../fleet/metrics.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { parseCommandArgs, parseWholeNumber, UsageError } from '../usage.js';

/** Loopback only unless asked: the metrics name every process's command. */
const DEFAULT_LISTEN = `127.0.0.1:${DEFAULT_EXPORTER_PORT}`;

/** ADDR:PORT, [IPv6]:PORT or :PORT (all addresses). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`--listen takes ADDR:PORT (for example 127.0.0.1:9964), got ${JSON.stringify(text)}`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

export const exporterCommand: Command = {
  name: 'exporter',
  summary: 'serve Prometheus metrics of KSM per system, cgroup and process, and a live dashboard',
  help: `Usage: ksm exporter [--listen ADDR:PORT] [--names node|ksm] [--top N] [--sample SECONDS]
                    [--fair-share SECONDS] [--json]

Serves, until SIGINT or SIGTERM:
  /metrics    the Prometheus text format: ksmd's counters under node_exporter's
              names (node_ksmd_pages_sharing, ...), ksmd's CPU seconds, and per
              cgroup and per process (the top N by merged memory): merged bytes,
              fair-share saved bytes, profit, zero pages, rmap items, how it opted in
  /           a live dashboard: saved MiB over time, containers, ksmd's knobs and
              the latest decisions of \`ksm autotune\`
  /api/state  the dashboard's data as JSON

Run it as root to see every process's KSM files (others are counted as unreadable).

Options:
  --listen ADDR:PORT  where to listen (default ${DEFAULT_LISTEN}; :PORT for all addresses)
  --names node|ksm    node (default): node_exporter's node_ksmd_* names, so existing
                      dashboards work; ksm: ksm_ksmd_* instead, beside node_exporter
  --top N             processes exported per scrape (default 20): bounds cardinality
  --sample SECONDS    seconds between the dashboard chart's samples (default 5)
  --fair-share SECONDS
                      seconds between fair-share computations (default 30): they walk
                      the page tables of every merging process, about 1 ms per MiB
                      merged, so they run in the background rather than per scrape
  --json              print the address as one JSON object once listening
  -h, --help          this text

Environment:
  KSM_AUTOTUNE_LOG    the decision log of \`ksm autotune\` (default /run/ksm-preload/autotune.jsonl)

Examples:
  sudo ksm exporter
  sudo ksm exporter --listen :9964 --names ksm
  curl -s localhost:9964/metrics | grep ^node_ksmd_pages_sharing
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, {
      listen: { type: 'string' },
      names: { type: 'string' },
      top: { type: 'string' },
      sample: { type: 'string' },
      'fair-share': { type: 'string' },
      json: { type: 'boolean' },
    });
    const { host, port } = parseListen(values.listen ?? DEFAULT_LISTEN);
    const names = (values.names ?? 'node') as MetricNames;
    if (names !== 'node' && names !== 'ksm') throw new UsageError(`--names takes node or ksm, got ${JSON.stringify(values.names)}`);
    const top = values.top === undefined ? 20 : parseWholeNumber('--top', values.top);
    const sampleSeconds = values.sample === undefined ? 5 : parseWholeNumber('--sample', values.sample);
    if (sampleSeconds < 1) throw new UsageError('--sample needs at least 1 second');
    const fairShareSeconds = values['fair-share'] === undefined ? 30 : parseWholeNumber('--fair-share', values['fair-share']);
    if (fairShareSeconds < 1) throw new UsageError('--fair-share needs at least 1 second');
    const exporter = await startExporter({ host, port, names, top, sampleSeconds, fairShareSeconds, autotuneLog: autotuneLogPath(context.env) });
    context.stdout.write(values.json ? formatJson({ url: exporter.url, metrics: `${exporter.url}/metrics` }, false) : `ksm exporter: metrics at ${exporter.url}/metrics, dashboard at ${exporter.url}/\n`);
    if (!context.signal.aborted) await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
    await exporter.close();
    return 0;
  },
};
