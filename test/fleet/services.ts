// Real Prometheus and node_exporter processes for the tests, each on a free loopback port.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PROMETHEUS = '/usr/bin/prometheus';
export const NODE_EXPORTER = '/usr/bin/prometheus-node-exporter';

/** Why `binary` cannot be run here, or undefined. */
export function missingTool(binary: string, debianPackage: string): string | undefined {
  return spawnSync(binary, ['--version']).error ? `${binary} is missing (apt-get install ${debianPackage})` : undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface Service {
  url: string;
  stop(): Promise<void>;
}

async function waitUntilUp(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let lastAnswer = 'no attempt finished';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with ${child.exitCode}: ${log()}`);
    try {
      // Each attempt is bounded: one connection stuck on a loaded machine must not use up the wait.
      const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (response.ok) return;
      lastAnswer = `HTTP ${response.status}: ${(await response.text()).slice(0, 500)}`;
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      lastAnswer = cause?.code ?? (error instanceof Error ? error.message : String(error));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer within 60 s (last attempt: ${lastAnswer}): ${log()}`);
}

function startProcess(binary: string, args: string[], readyUrl: string, cleanup: () => void): Promise<Service> {
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        cleanup();
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', done);
      child.kill('SIGTERM');
    });
  return waitUntilUp(readyUrl, child, () => stderr).then(
    () => ({ url: new URL(readyUrl).origin, stop }),
    async (error: unknown) => {
      await stop();
      throw error;
    },
  );
}

/** node_exporter with only its ksmd collector; `sysfs` replaces /sys (it reads SYSFS/kernel/mm/ksm). */
export async function startNodeExporter(sysfs = '/sys'): Promise<Service> {
  const port = await freePort();
  const args = ['--collector.disable-defaults', '--collector.ksmd', `--path.sysfs=${sysfs}`, `--web.listen-address=127.0.0.1:${port}`];
  return startProcess(NODE_EXPORTER, args, `http://127.0.0.1:${port}/metrics`, () => undefined);
}

/** Prometheus scraping `targets` (job name → host:port) every second, with its own temporary storage. */
export async function startPrometheus(targets: Record<string, string>): Promise<Service> {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-prometheus-'));
  const jobs = Object.entries(targets)
    .map(([job, target]) => `  - job_name: ${job}\n    static_configs:\n      - targets: ['${target}']\n`)
    .join('');
  writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n${jobs}`);
  const port = await freePort();
  const args = [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`];
  return startProcess(PROMETHEUS, args, `http://127.0.0.1:${port}/-/ready`, () => rmSync(dir, { recursive: true, force: true }));
}

/** One instant query through Prometheus's HTTP API: each series' labels and value. */
export async function queryPrometheus(prometheus: Service, query: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
  const response = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await response.json()) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
  if (body.status !== 'success') throw new Error(`query ${query} failed: ${JSON.stringify(body)}`);
  return body.data.result.map((series) => ({ metric: series.metric, value: Number(series.value[1]) }));
}
