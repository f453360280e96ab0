// `ksm exporter`: Prometheus metrics at /metrics, the live dashboard at /, and
// the dashboard's data at /api/state, from one HTTP server.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../core/addon.js';
import { KsmError } from '../core/errors.js';
import { systemKsmStats } from '../kernel/system-stats.js';
import { checkCString, checkInteger, checkOptions, describe } from '../core/validate.js';
import { autotuneLogPath, readAutotuneDecisions } from './autotune-log.js';
import { FairShareCache } from './fair-share-cache.js';
import { createExporterMetrics, type MetricNames } from './metrics.js';
import { takeSnapshot, type FleetSnapshot } from './snapshot.js';

/** Options of startExporter(); every one has a default. */
export interface ExporterOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port; default 9964, 0 for any free port. */
  port?: number;
  /** `node` (default): node_exporter's node_ksmd_* names; `ksm`: ksm_ksmd_* to run beside node_exporter. */
  names?: MetricNames;
  /** Processes exported per scrape, most merged first; default 20. */
  top?: number;
  /** Seconds between the samples of saved memory kept for the dashboard's chart; default 5. */
  sampleSeconds?: number;
  /** Seconds between fair-share computations (they walk page tables); default 30. */
  fairShareSeconds?: number;
  /** The file `ksm autotune` logs its decisions to; default KSM_AUTOTUNE_LOG or /run/ksm-preload/autotune.jsonl. */
  autotuneLog?: string;
}

export const DEFAULT_EXPORTER_PORT = 9964;

function checkExporterOptions(options: ExporterOptions | undefined): Required<ExporterOptions> {
  const operation = 'startExporter';
  checkOptions(operation, options, ['host', 'port', 'names', 'top', 'sampleSeconds', 'fairShareSeconds', 'autotuneLog']);
  const names = options?.names ?? 'node';
  if (names !== 'node' && names !== 'ksm') throw new TypeError(`${operation}: options.names must be 'node' or 'ksm' (got ${describe(names)})`);
  return {
    host: checkCString(operation, 'options.host', options?.host ?? '127.0.0.1'),
    port: checkInteger(operation, 'options.port', options?.port ?? DEFAULT_EXPORTER_PORT, 0, 65535),
    names,
    top: checkInteger(operation, 'options.top', options?.top ?? 20, 0, 100_000),
    sampleSeconds: checkInteger(operation, 'options.sampleSeconds', options?.sampleSeconds ?? 5, 1, 3600),
    fairShareSeconds: checkInteger(operation, 'options.fairShareSeconds', options?.fairShareSeconds ?? 30, 1, 86_400),
    autotuneLog: checkCString(operation, 'options.autotuneLog', options?.autotuneLog ?? autotuneLogPath()),
  };
}

/** Samples kept for the chart: an hour at the default 5 s. */
const HISTORY_LENGTH = 720;
/** Decisions of autotune the dashboard lists. */
const DECISIONS_SHOWN = 20;
/** A page refresh reuses a snapshot this young instead of walking /proc again. */
const SNAPSHOT_REUSE_MS = 1000;

export interface RunningExporter {
  server: Server;
  /** http://HOST:PORT */
  url: string;
  close(): Promise<void>;
}

/** One sample of the chart: time (s since the epoch), saved and profit bytes. */
type HistorySample = [number, number | null, number | null];

/** The dashboard's static files, from the package (lib/fleet/dashboard, shipped as is) and uplot's own dist/. */
function staticFiles(): Map<string, { file: string; type: string }> {
  const folder = join(packageRoot, 'lib', 'fleet', 'dashboard');
  const resolve = createRequire(join(packageRoot, 'package.json')).resolve;
  return new Map([
    ['/', { file: join(folder, 'index.html'), type: 'text/html; charset=utf-8' }],
    ['/dashboard.js', { file: join(folder, 'dashboard.js'), type: 'text/javascript; charset=utf-8' }],
    ['/dashboard.css', { file: join(folder, 'dashboard.css'), type: 'text/css; charset=utf-8' }],
    ['/uplot.js', { file: resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' }],
    ['/uplot.css', { file: resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }],
  ]);
}

/**
 * Starts the exporter's HTTP server: /metrics (Prometheus text format), / (the live
 * dashboard) and /api/state (its data). Resolves once it listens.
 *
 * @example
 * const exporter = await startExporter({ port: 0 });
 * console.log(`${exporter.url}/metrics`);
 * await exporter.close();
 */
export async function startExporter(exporterOptions?: ExporterOptions): Promise<RunningExporter> {
  const options = checkExporterOptions(exporterOptions);
  const fairShare = new FairShareCache();
  fairShare.refresh();
  const fairShareTimer = setInterval(() => fairShare.refresh(), options.fairShareSeconds * 1000);
  let current: FleetSnapshot | undefined;
  const snapshot = (): FleetSnapshot => (current = takeSnapshot(fairShare));
  const registry = createExporterMetrics({ names: options.names, top: options.top, current: () => current ?? snapshot() });
  const files = staticFiles();

  const history: HistorySample[] = [];
  const sample = (): void => {
    const stats = systemKsmStats();
    history.push([Math.round(Date.now() / 1000), stats.savedBytes ?? null, stats.profitBytes ?? null]);
    if (history.length > HISTORY_LENGTH) history.shift();
  };
  sample();
  const sampler = setInterval(sample, options.sampleSeconds * 1000);

  const state = (): unknown => {
    const reading = current && Date.now() - current.time < SNAPSHOT_REUSE_MS ? current : snapshot();
    return {
      hostname: hostname(),
      ...reading,
      processes: reading.processes.slice(0, options.top),
      history,
      autotune: { log: options.autotuneLog, decisions: readAutotuneDecisions(options.autotuneLog, DECISIONS_SHOWN) },
    };
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(response, 405, 'text/plain', 'only GET\n');
    if (path === '/metrics') {
      snapshot();
      return send(response, 200, registry.contentType, await registry.metrics());
    }
    if (path === '/api/state') return send(response, 200, 'application/json', JSON.stringify(state()));
    const file = files.get(path);
    if (file) return send(response, 200, file.type, readFileSync(file.file));
    return send(response, 404, 'text/plain', 'not found: try /metrics or /\n');
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      send(response, 500, 'text/plain', `${error instanceof Error ? error.message : String(error)}\n`);
    });
  });
  const stopTimers = (): void => {
    clearInterval(sampler);
    clearInterval(fairShareTimer);
  };
  server.on('close', stopTimers);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => {
      stopTimers();
      reject(KsmError.fromNode('startExporter', error, `cannot listen on ${options.host}:${options.port}: ${error.message}`));
    });
    server.listen(options.port, options.host, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(response: ServerResponse, status: number, type: string, body: string | Buffer): void {
  if (response.headersSent) return void response.end();
  response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
