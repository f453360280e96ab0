import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startExporter } from '../../lib/fleet/exporter.js';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { toolMissing } from '../helpers/tools.js';
import { waitFor } from '../helpers/ksmd.js';
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
    const missing = toolMissing(tool);
    if (missing) return missing;
  }
  return undefined;
}

function readKnobs(folder: string): Record<string, string> {
  return Object.fromEntries(readdirSync(folder).map((name) => [name, readFileSync(join(folder, name), 'utf8').trim()]));
}

// The first test builds the image into this test's own podman storage: minutes on a fresh machine.
const IMAGE_TIMEOUT_MS = 5 * 60_000;

describe('the DaemonSet pod under podman', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-kube-'));
  const conf = join(dir, 'containers.conf');
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--cgroup-manager', 'cgroupfs', '--runtime', 'runc'];
  const podman = (args: string[], allowFailure = false): string => {
    const result = spawnSync('podman', [...global, ...args], { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF: conf }, timeout: 5 * 60_000 });
    if (!allowFailure && result.status !== 0) throw new Error(`podman ${args.join(' ')}: exit ${result.status}: ${result.stderr}`);
    return result.stdout;
  };

  let image: string | undefined;
  /** The image of build-image.mjs, in this test's own podman storage. */
  const ensureImage = async (): Promise<string> => {
    if (image) return image;
    writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n');
    const { buildRootfs, importImage } = await import('../../deploy/kubernetes/build-image.mjs');
    const tarball = buildRootfs(join(dir, 'rootfs.tar'));
    image = importImage(tarball, global);
    rmSync(tarball);
    return image;
  };

  afterAll(() => {
    if (!podmanUnavailable()) {
      podman(['pod', 'rm', '--force', '--all'], true);
      podman(['system', 'reset', '--force'], true);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('kube play runs both containers: autotune sets the knobs, the exporter serves its decisions and cannot write /sys', async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable() ?? podmanUnavailable());
    await ensureImage();
    // autotune's knob folder is a copy of the host's: the test leaves the real ksmd alone
    // (and needs no lock), yet sees every write autotune makes through its mount.
    const knobs = join(dir, 'ksm-knobs');
    mkdirSync(knobs);
    for (const name of readdirSync('/sys/kernel/mm/ksm')) writeFileSync(join(knobs, name), readFileSync(join('/sys/kernel/mm/ksm', name)));
    writeFileSync(join(knobs, 'run'), '1\n');
    writeFileSync(join(knobs, 'pages_to_scan'), '100\n');
    const before = readKnobs(knobs);

    const daemonSet = manifests().get('DaemonSet') as Manifest;
    const spec = structuredClone(daemonSet.spec.template.spec);
    const knobVolume = spec.volumes.find((volume: any) => volume.hostPath?.path === '/sys/kernel/mm/ksm');
    knobVolume.hostPath.path = knobs;
    // The DaemonSet's pod template, as the Pod kube play runs.
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ksm-preload', labels: daemonSet.spec.template.metadata.labels }, spec };
    const podFile = join(dir, 'pod.yaml');
    writeFileSync(podFile, JSON.stringify(pod));

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
      // The exporter reads the host's knobs through its read-only /sys.
      const exposition = parseExposition(metrics);
      expect(exposition.samples.find((sample) => sample.name === 'node_ksmd_pages_to_scan')?.value).toBe(Number(readFileSync('/sys/kernel/mm/ksm/pages_to_scan', 'utf8')));

      // autotune logs only decisions it applied: it wrote them through its mount, and the exporter shows them.
      let decisions: Array<{ action: string; knobs: Record<string, string> }> = [];
      const decided = await waitFor(() => {
        decisions = JSON.parse(inExporter(fetchScript('/api/state')).stdout || '{}').autotune?.decisions ?? [];
        return decisions.length > 0;
      }, 60_000, 1000);
      expect(decided, podman(['logs', 'ksm-preload-autotune'], true)).toBe(true);
      const after = readKnobs(knobs);
      expect(Object.keys(after).filter((name) => after[name] !== before[name]).length).toBeGreaterThan(0);

      const write = inExporter("require('fs').writeFileSync('/sys/kernel/mm/ksm/pages_to_scan', '100')");
      expect(write.status).not.toBe(0);
      expect(write.stderr).toMatch(/EROFS|EACCES|EPERM/);
      expect(podman(['ps', '--format', '{{.Names}} {{.Status}}'])).toMatch(/ksm-preload-autotune Up/);
      // SIGTERM, with the DaemonSet's grace period: autotune puts every knob back before it exits.
      podman(['pod', 'stop', '--time', String(daemonSet.spec.template.spec.terminationGracePeriodSeconds), 'ksm-preload']);
      expect(readKnobs(knobs), podman(['logs', 'ksm-preload-autotune'], true)).toEqual(before);
    } finally {
      podman(['kube', 'down', podFile], true);
    }
  }, IMAGE_TIMEOUT_MS);

  /** User processes on the host, counted as the exporter does: a non-empty ksm_stat (ksm_merging_pages before 6.1). */
  const hostProcessesNow = (): number =>
    readdirSync('/proc').filter((entry) => {
      if (!/^\d+$/.test(entry)) return false;
      for (const name of ['ksm_stat', 'ksm_merging_pages']) {
        try {
          return readFileSync(`/proc/${entry}/${name}`, 'utf8') !== '';
        } catch {
          // absent on this kernel, or the process is gone
        }
      }
      return false;
    }).length;

  // podman 4.3 (Debian 12) kube play ignores hostPID, so the host's PID namespace is
  // checked with the exporter container's own settings under `podman run --pid host`.
  it("in the host's PID namespace, the exporter container's capabilities read every process and ksmd", async (ctx) => {
    requireOrSkip(ctx, ksmUnavailable() ?? podmanUnavailable());
    await ensureImage();
    const daemonSet = manifests().get('DaemonSet') as Manifest;
    const exporter = daemonSet.spec.template.spec.containers.find((container: any) => container.name === 'exporter');
    const security = exporter.securityContext;
    const args = [
      'run', '-d', '--name', 'ksm-exporter-hostpid', '--pid', 'host', '--user', String(security.runAsUser),
      ...security.capabilities.drop.flatMap((cap: string) => ['--cap-drop', cap]),
      ...security.capabilities.add.flatMap((cap: string) => ['--cap-add', cap]),
      ...(security.readOnlyRootFilesystem ? ['--read-only'] : []),
      ...(security.allowPrivilegeEscalation === false ? ['--security-opt', 'no-new-privileges'] : []),
      ...exporter.env.flatMap((variable: { name: string; value: string }) => ['--env', `${variable.name}=${variable.value}`]),
      exporter.image, ...exporter.command,
    ];
    podman(args);
    const hostProcesses = hostProcessesNow();
    try {
      let metrics = '';
      const up = await waitFor(() => {
        metrics = spawnSync('podman', [...global, 'exec', 'ksm-exporter-hostpid', 'node', '-e', "fetch('http://127.0.0.1:9964/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"], {
          encoding: 'utf8',
          env: { ...process.env, CONTAINERS_CONF: conf },
        }).stdout;
        return metrics.includes('ksm_processes_scanned');
      }, 60_000, 500);
      expect(up, podman(['logs', 'ksm-exporter-hostpid'], true)).toBe(true);
      const value = (name: string): number | undefined => parseExposition(metrics).samples.find((sample) => sample.name === name)?.value;
      // Every process of the host, not only the container's two: as many as the host shows, give or take churn.
      expect(value('ksm_processes_scanned')).toBeGreaterThanOrEqual(Math.min(hostProcesses, hostProcessesNow()) - 3);
      expect(hostProcesses).toBeGreaterThan(5);
      expect(value('ksm_processes_unreadable')).toBe(0);
      expect(value('ksm_ksmd_cpu_seconds_total')).toBeGreaterThan(0);
      expect(value('ksm_fair_share_available')).toBe(1);
    } finally {
      podman(['rm', '--force', 'ksm-exporter-hostpid'], true);
    }
  }, IMAGE_TIMEOUT_MS);
});
