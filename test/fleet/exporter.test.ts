import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExporter, type ExporterOptions, type RunningExporter } from '../../lib/fleet/exporter.js';
import { runInProcess, WITH_KSMD } from '../cli/harness.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { parseExposition, valueOf, type Exposition } from './prometheus-text.js';
import { freePort, missingTool, NODE_EXPORTER, PROMETHEUS, queryPrometheus, startNodeExporter, startPrometheus, type Service } from './services.js';
import { removeWorkerBinary, startWorker, stopWorkers, type Worker } from './workers.js';

const PAGE = 4096;

function exporterOptions(overrides: ExporterOptions = {}): ExporterOptions {
  return { port: 0, sampleSeconds: 60, autotuneLog: '/nonexistent/autotune.jsonl', ...overrides };
}

async function scrape(url: string): Promise<{ text: string; exposition: Exposition; contentType: string }> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  const text = await response.text();
  return { text, exposition: parseExposition(text), contentType: response.headers.get('content-type') ?? '' };
}

/** The node_ksmd_* samples of one exposition, by name. */
function nodeKsmd(exposition: Exposition): Map<string, number> {
  return new Map(exposition.samples.filter((sample) => sample.name.startsWith('node_ksmd_')).map((sample) => [sample.name, sample.value]));
}

describe('startExporter() and `ksm exporter`', () => {
  it('refuses bad options with TypeError or RangeError', async () => {
    await expect(startExporter({ port: 70000 })).rejects.toThrow(RangeError);
    await expect(startExporter({ names: 'prom' as never })).rejects.toThrow(TypeError);
    await expect(startExporter({ top: -1 })).rejects.toThrow(RangeError);
    await expect(startExporter({ colour: 1 } as never)).rejects.toThrow(TypeError);
  });

  it('rejects when the port is taken', async () => {
    const first = await startExporter({ port: 0 });
    try {
      await expect(startExporter({ port: Number(new URL(first.url).port) })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });

  it('listens where --listen says until aborted, and refuses a bad --listen with exit code 2', async () => {
    const port = await freePort();
    const controller = new AbortController();
    const running = runInProcess(['exporter', '--listen', `127.0.0.1:${port}`, '--json'], { signal: controller.signal });
    const deadline = Date.now() + 10_000;
    let response: Response | undefined;
    while (!response && Date.now() < deadline) response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
    expect(response?.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/nowhere`)).status).toBe(404);
    controller.abort();
    const result = await running;
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ url: `http://127.0.0.1:${port}`, metrics: `http://127.0.0.1:${port}/metrics` });
    const bad = await runInProcess(['exporter', '--listen', 'localhost']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--listen takes ADDR:PORT');
  });
});

describe('with a fake /sys/kernel/mm/ksm', () => {
  let sysfs: string;
  const saved = process.env.KSM_SYSFS_ROOT;

  beforeAll(() => {
    // node_exporter reads SYSFS/kernel/mm/ksm; the exporter reads KSM_SYSFS_ROOT.
    sysfs = mkdtempSync(join(tmpdir(), 'ksm-fleet-sysfs-'));
    const root = join(sysfs, 'kernel', 'mm', 'ksm');
    mkdirSync(root, { recursive: true });
    const files = {
      full_scans: '17', merge_across_nodes: '1', pages_shared: '310', pages_sharing: '4711', pages_to_scan: '1250', pages_unshared: '99',
      pages_volatile: '3', run: '1', sleep_millisecs: '37', general_profit: '-123904', pages_scanned: '90000', ksm_zero_pages: '5',
      advisor_mode: 'none [scan-time]',
    };
    for (const [name, value] of Object.entries(files)) writeFileSync(join(root, name), `${value}\n`);
    process.env.KSM_SYSFS_ROOT = root;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.KSM_SYSFS_ROOT;
    else process.env.KSM_SYSFS_ROOT = saved;
    rmSync(sysfs, { recursive: true, force: true });
  });

  it('exports the system counters under node_exporter names, types and units, profit signed', async () => {
    const exporter = await startExporter(exporterOptions());
    try {
      const { text, exposition, contentType } = await scrape(exporter.url);
      expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(valueOf(exposition, 'node_ksmd_pages_sharing')).toBe(4711);
      expect(valueOf(exposition, 'node_ksmd_sleep_seconds')).toBe(0.037);
      expect(valueOf(exposition, 'node_ksmd_general_profit_bytes')).toBe(-123904);
      expect(valueOf(exposition, 'node_ksmd_full_scans_total')).toBe(17);
      expect(valueOf(exposition, 'ksm_ksmd_advisor_scan_time')).toBe(1);
      expect(valueOf(exposition, 'ksm_ksmd_pages_scanned_total')).toBe(90000);
      expect(exposition.types.get('node_ksmd_full_scans_total')).toBe('counter');
      expect(exposition.types.get('node_ksmd_general_profit_bytes')).toBe('gauge');
      expect(exposition.types.get('ksm_ksmd_cpu_seconds_total')).toBe('counter');
      // A counter this kernel lacks (pages_skipped here) is absent, not 0.
      expect(text).not.toContain('ksm_ksmd_pages_skipped');
      // No process or Node defaults: only what the exporter defines.
      expect(exposition.samples.every((sample) => /^(node_ksmd|ksm)_/.test(sample.name))).toBe(true);
    } finally {
      await exporter.close();
    }
  });

  it('carries the values Debian node_exporter reads from the same tree', async (ctx) => {
    requireOrSkip(ctx, missingTool(NODE_EXPORTER, 'prometheus-node-exporter'));
    const [exporter, nodeExporter] = await Promise.all([startExporter(exporterOptions()), startNodeExporter(sysfs)]);
    try {
      const [ours, theirs] = await Promise.all([scrape(exporter.url), scrape(nodeExporter.url)]);
      const theirValues = nodeKsmd(theirs.exposition);
      expect(theirValues.size).toBeGreaterThanOrEqual(9);
      for (const [name, value] of theirValues) {
        expect({ name, value: valueOf(ours.exposition, name), type: ours.exposition.types.get(name) }).toEqual({ name, value, type: theirs.exposition.types.get(name) });
      }
    } finally {
      await Promise.all([exporter.close(), nodeExporter.stop()]);
    }
  });

  it('switches to ksm_ names with names=ksm, to run beside node_exporter', async () => {
    const exporter = await startExporter(exporterOptions({ names: 'ksm' }));
    try {
      const { exposition } = await scrape(exporter.url);
      expect(exposition.samples.some((sample) => sample.name.startsWith('node_'))).toBe(false);
      expect(valueOf(exposition, 'ksm_ksmd_pages_sharing')).toBe(4711);
      expect(valueOf(exposition, 'ksm_ksmd_general_profit_bytes')).toBe(-123904);
    } finally {
      await exporter.close();
    }
  });
});

describe('on the real kernel, with ksmd merging', () => {
  const workers: Worker[] = [];
  let exporter: RunningExporter | undefined;

  afterAll(async () => {
    await stopWorkers(workers);
    await exporter?.close();
    removeWorkerBinary();
  });

  it(
    'reports each process and cgroup as /proc does, matches node_exporter, and Prometheus scrapes it',
    WITH_KSMD,
    async (ctx) => {
      requireOrSkip(ctx, ksmUnavailable() ?? missingTool(NODE_EXPORTER, 'prometheus-node-exporter') ?? missingTool(PROMETHEUS, 'prometheus'));
      const pages = 256;
      workers.push(await startWorker(pages, 'madvise'), await startWorker(pages, 'madvise'), await startWorker(pages, 'prctl'), await startWorker(pages, 'none'));
      const [madviseA, madviseB, prctl, unmarked] = workers as [Worker, Worker, Worker, Worker];
      const merging = (pid: number): number => Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8'));
      await withKsmd(async () => {
        const marked = [madviseA, madviseB, prctl];
        // prctl marks the whole process: its stack and libc's pages merge too.
        await waitFor(() => marked.every((worker) => merging(worker.pid) >= pages), 60_000);
        for (const worker of marked) expect(merging(worker.pid)).toBeGreaterThanOrEqual(pages);
        // Stopped, ksmd leaves every counter still: both exporters see one state.
        writeFileSync('/sys/kernel/mm/ksm/run', '0');
        exporter = await startExporter(exporterOptions({ top: 1000 }));
        const nodeExporter = await startNodeExporter();
        const services: Service[] = [nodeExporter];
        try {
          const [ours, theirs] = await Promise.all([scrape(exporter.url), scrape(nodeExporter.url)]);
          const theirValues = nodeKsmd(theirs.exposition);
          expect(theirValues.get('node_ksmd_pages_sharing')).toBeGreaterThan(0);
          for (const [name, value] of theirValues) expect({ name, value: valueOf(ours.exposition, name) }).toEqual({ name, value });

          const processValue = (name: string, worker: Worker): number | undefined => valueOf(ours.exposition, `ksm_process_${name}`, { pid: String(worker.pid) });
          for (const [worker, optIn] of [[madviseA, 'madvise'], [madviseB, 'madvise'], [prctl, 'prctl']] as const) {
            const sample = ours.exposition.samples.find((s) => s.name === 'ksm_process_merging_bytes' && s.labels.pid === String(worker.pid));
            expect(sample?.value).toBe(merging(worker.pid) * PAGE);
            expect(sample?.labels.opt_in).toBe(optIn);
            expect(sample?.labels.command).toBe('merging-worker');
            const stat = Object.fromEntries(readFileSync(`/proc/${worker.pid}/ksm_stat`, 'utf8').trim().split('\n').map((line) => line.split(/:?\s+/)));
            expect(processValue('rmap_items', worker)).toBe(Number(stat.ksm_rmap_items));
            expect(processValue('profit_bytes', worker)).toBe(Number(stat.ksm_process_profit));
            expect(processValue('zero_page_bytes', worker)).toBe(Number(stat.ksm_zero_pages) * PAGE);
            // Each of the pattern pages is mapped by the three workers: each is owed 2/3 of a page.
            expect(processValue('fair_share_saved_bytes', worker)).toBeGreaterThanOrEqual(Math.floor((pages * 2 * PAGE) / 3) - PAGE);
          }
          expect(processValue('merging_bytes', unmarked)).toBeUndefined();

          // Every cgroup's merged bytes are the sum of its processes'.
          const cgroupSamples = ours.exposition.samples.filter((s) => s.name === 'ksm_cgroup_merging_bytes');
          const processSamples = ours.exposition.samples.filter((s) => s.name === 'ksm_process_merging_bytes');
          expect(cgroupSamples.reduce((sum, s) => sum + s.value, 0)).toBe(processSamples.reduce((sum, s) => sum + s.value, 0));
          expect(valueOf(ours.exposition, 'ksm_exporter_scrape_duration_seconds')).toBeGreaterThan(0);
          expect(valueOf(ours.exposition, 'ksm_ksmd_cpu_seconds_total')).toBeGreaterThan(0);

          const exporterHost = new URL(exporter.url).host;
          const prometheus = await startPrometheus({ ksm: exporterHost, node: new URL(nodeExporter.url).host });
          services.push(prometheus);
          const up = (): Promise<boolean> => queryPrometheus(prometheus, 'up').then((series) => series.length === 2 && series.every((s) => s.value === 1));
          const deadline = Date.now() + 30_000;
          while (!(await up()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
          expect(await up()).toBe(true);
          const pagesSharing = Number(readFileSync('/sys/kernel/mm/ksm/pages_sharing', 'utf8'));
          const byJob = await queryPrometheus(prometheus, 'node_ksmd_pages_sharing');
          expect(byJob.map((s) => [s.metric.job, s.value]).sort()).toEqual([['ksm', pagesSharing], ['node', pagesSharing]]);
          const [merged] = await queryPrometheus(prometheus, `ksm_process_merging_bytes{pid="${prctl.pid}"}`);
          expect(merged?.value).toBe(merging(prctl.pid) * PAGE);
          expect(merged?.metric.opt_in).toBe('prctl');
          const [sum] = await queryPrometheus(prometheus, `sum(ksm_process_merging_bytes{command="merging-worker"})`);
          expect(sum?.value).toBe(marked.reduce((total, worker) => total + merging(worker.pid), 0) * PAGE);
        } finally {
          await Promise.all(services.map((service) => service.stop()));
        }
      });
    },
  );
});
