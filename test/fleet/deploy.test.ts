import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startExporter } from '../../lib/fleet/exporter.js';
import { WITH_KSMD } from '../cli/harness.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { parseExposition } from './prometheus-text.js';
import { removeWorkerBinary, startWorker, stopWorkers, type Worker } from './workers.js';

const ROOT = join(__dirname, '../..');
const KUBERNETES = join(ROOT, 'deploy/kubernetes');
const GRAFANA = join(ROOT, 'deploy/grafana/ksm-dashboard.json');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec: Record<string, any>;
}

function manifests(): Map<string, Manifest> {
  const byKind = new Map<string, Manifest>();
  for (const file of readdirSync(KUBERNETES).filter((name) => /\.ya?ml$/.test(name))) {
    for (const document of parseAllDocuments(readFileSync(join(KUBERNETES, file), 'utf8'))) {
      expect(document.errors, file).toEqual([]);
      const manifest = document.toJS() as Manifest;
      byKind.set(manifest.kind, manifest);
    }
  }
  return byKind;
}

/** The metric names a PromQL expression reads: what is left once strings, matchers, ranges, grouping clauses and functions are taken out. */
export function metricsOfPromql(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/([a-zA-Z_:][\w:]*)\s*(\()?/g)) {
    const [, name = '', call] = match;
    if (call || /^(by|without|on|ignoring|group_left|group_right|offset|bool|and|or|unless|inf|nan)$/i.test(name)) continue;
    names.add(name);
  }
  return [...names];
}

/** Every PromQL expression of the dashboard: panel targets, and the query variables' label_values(METRIC, label). */
function grafanaExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(GRAFANA, 'utf8'));
  const exprs: string[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (key === 'expr' && typeof inner === 'string') exprs.push(inner);
        else visit(inner);
      }
    }
  };
  visit(dashboard.panels);
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query: string = typeof variable.query === 'string' ? variable.query : variable.query.query;
    exprs.push(query.replace(/label_values\(\s*([^,)]+)\s*,[^)]*\)/g, '$1'));
  }
  return exprs;
}

describe('Kubernetes manifests and the Grafana dashboard', () => {
  it('every YAML file parses, and the DaemonSet grants /sys/kernel/mm/ksm to autotune alone', () => {
    const byKind = manifests();
    expect([...byKind.keys()].sort()).toEqual(['DaemonSet', 'Kustomization', 'Namespace', 'Service', 'ServiceMonitor']);
    const pod = byKind.get('DaemonSet')?.spec.template.spec;
    expect(pod.hostPID).toBe(true);
    const containers = new Map<string, any>(pod.containers.map((container: any) => [container.name, container]));
    expect([...containers.keys()].sort()).toEqual(['autotune', 'exporter']);
    const mounts = (name: string): string[] => containers.get(name).volumeMounts.map((mount: any) => mount.mountPath);
    expect(mounts('autotune')).toContain('/sys/kernel/mm/ksm');
    expect(mounts('exporter')).not.toContain('/sys/kernel/mm/ksm');
    for (const container of containers.values()) {
      expect(container.securityContext.privileged).toBeUndefined();
      expect(container.securityContext.capabilities.drop).toEqual(['ALL']);
      expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    }
    const service = byKind.get('Service');
    expect(service?.metadata.annotations?.['prometheus.io/scrape']).toBe('true');
    const port = containers.get('exporter').ports[0];
    expect(service?.metadata.annotations?.['prometheus.io/port']).toBe(String(port.containerPort));
    expect(byKind.get('ServiceMonitor')?.spec.endpoints[0].port).toBe(service?.spec.ports[0].name);
    expect(containers.get('exporter').command).toContain(`:${port.containerPort}`);
  });

  describe('against a running exporter', () => {
    const workers: Worker[] = [];
    afterAll(async () => {
      await stopWorkers(workers);
      removeWorkerBinary();
    });

    it('the dashboard reads only metrics the exporter exports', async () => {
      // A process that opted in, so the per-process and per-cgroup families have series.
      workers.push(await startWorker(16, 'madvise'));
      const exporter = await startExporter({ port: 0 });
      try {
        const exposition = parseExposition(await (await fetch(`${exporter.url}/metrics`)).text());
        const exported = new Set(exposition.types.keys());
        const exprs = grafanaExpressions();
        expect(exprs.length).toBeGreaterThan(10);
        const used = new Set(exprs.flatMap(metricsOfPromql));
        expect(used.size).toBeGreaterThan(10);
        expect([...used].filter((name) => !exported.has(name))).toEqual([]);
      } finally {
        await exporter.close();
      }
    });

    it('finds metric names in PromQL', () => {
      expect(metricsOfPromql('sum by (name) (rate(ksm_ksmd_cpu_seconds_total{instance=~"$node"}[$__rate_interval])) / on(instance) node_ksmd_run')).toEqual(['ksm_ksmd_cpu_seconds_total', 'node_ksmd_run']);
      expect(metricsOfPromql('topk(10, ksm_process_merging_bytes) * 2')).toEqual(['ksm_process_merging_bytes']);
    });
  });
});

function podmanUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'podman kube play of a hostPID pod needs root';
  for (const tool of ['podman', 'runc', 'catatonit']) {
    if (spawnSync(tool, ['--version']).error) return `${tool} is missing (apt-get install podman runc catatonit)`;
  }
  return undefined;
}

describe('the DaemonSet pod under podman kube play', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-kube-'));
  const conf = join(dir, 'containers.conf');
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--cgroup-manager', 'cgroupfs', '--runtime', 'runc'];
  const podman = (args: string[], allowFailure = false): string => {
    const result = spawnSync('podman', [...global, ...args], { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF: conf }, timeout: 5 * 60_000 });
    if (!allowFailure && result.status !== 0) throw new Error(`podman ${args.join(' ')}: exit ${result.status}: ${result.stderr}`);
    return result.stdout;
  };

  afterAll(() => {
    if (!podmanUnavailable()) {
      podman(['pod', 'rm', '--force', '--all'], true);
      podman(['system', 'reset', '--force'], true);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs both containers: the exporter sees the host and serves autotune decisions, its /sys stays read-only', WITH_KSMD, async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable() ?? podmanUnavailable());
    writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n');
    const { buildRootfs, importImage } = await import('../../deploy/kubernetes/build-image.mjs');
    const tarball = buildRootfs(join(dir, 'rootfs.tar'));
    importImage(tarball, global);
    rmSync(tarball);

    // The DaemonSet's pod template, as the Pod kube play runs.
    const daemonSet = manifests().get('DaemonSet') as Manifest;
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ksm-preload', labels: daemonSet.spec.template.metadata.labels }, spec: daemonSet.spec.template.spec };
    const podFile = join(dir, 'pod.yaml');
    writeFileSync(podFile, JSON.stringify(pod));

    await withKsmd(async () => {
      podman(['kube', 'play', podFile]);
      try {
        const inExporter = (script: string): { status: number | null; stdout: string; stderr: string } =>
          spawnSync('podman', [...global, 'exec', 'ksm-preload-exporter', 'node', '-e', script], { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF: conf } });
        const fetchScript = (path: string): string => `fetch('http://127.0.0.1:9964${path}').then((r) => r.text()).then((t) => process.stdout.write(t))`;
        let metrics = '';
        const up = await waitFor(() => {
          metrics = inExporter(fetchScript('/metrics')).stdout;
          return metrics.includes('node_ksmd_run');
        }, 60_000, 500);
        expect(up, podman(['logs', 'ksm-preload-exporter'], true)).toBe(true);
        const exposition = parseExposition(metrics);
        const value = (name: string): number | undefined => exposition.samples.find((sample) => sample.name === name)?.value;
        // hostPID: the host's processes and ksmd's CPU time are visible from the pod.
        expect(value('ksm_processes_scanned')).toBeGreaterThan(20);
        expect(value('ksm_ksmd_cpu_seconds_total')).toBeGreaterThan(0);
        expect(value('node_ksmd_pages_to_scan')).toBe(Number(readFileSync('/sys/kernel/mm/ksm/pages_to_scan', 'utf8')));

        const decided = await waitFor(() => JSON.parse(inExporter(fetchScript('/api/state')).stdout || '{}').autotune?.decisions?.length > 0, 60_000, 1000);
        expect(decided, podman(['logs', 'ksm-preload-autotune'], true)).toBe(true);

        const write = inExporter("require('fs').writeFileSync('/sys/kernel/mm/ksm/pages_to_scan', '100')");
        expect(write.status).not.toBe(0);
        expect(write.stderr).toMatch(/EROFS|EACCES|EPERM/);
        expect(podman(['ps', '--format', '{{.Names}} {{.Status}}'])).toMatch(/ksm-preload-autotune Up/);
      } finally {
        // SIGTERM: autotune puts the knobs back before withKsmd restores them too.
        podman(['kube', 'down', podFile], true);
      }
    });
  });
});
