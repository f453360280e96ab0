// Naming cgroups: which container engine made a cgroup path, which container and pod it
// is, by the names the engine's own metadata files give them.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { checkCString, checkOptions } from '../core/validate.js';

/** What a cgroup path is: a container of an engine, a pod, a systemd unit, or just the path. */
export interface CgroupIdentity {
  /** The cgroup path, as /proc/PID/cgroup prints it. */
  path: string;
  engine?: 'podman' | 'docker' | 'containerd' | 'cri-o' | 'kubernetes' | 'systemd';
  /** The full container id, from the path. */
  containerId?: string;
  /** The container's name, where the engine's metadata can be read. */
  container?: string;
  /** The pod's name (Kubernetes: namespace/name), or its id where no metadata can be read. */
  pod?: string;
  /** The best human name: the container's name, pod/container in Kubernetes, the unit, or the path. */
  name: string;
}

/** Options of identifyCgroup(). */
export interface IdentifyCgroupOptions {
  /** Where the engines' files are looked up: `/` (the default), or a copy of the host's tree. */
  root?: string;
}

const ID = '[0-9a-f]{64}';

/**
 * Names the container (podman, docker, containerd, CRI-O, Kubernetes) or systemd unit
 * behind a cgroup path, from the path itself and the engines' metadata files: podman's
 * storage (containers.json and its pod database; where `podman --root` put it, the
 * container's conmon says), docker's config.v2.json, the OCI
 * bundles of containerd and CRI-O, and /var/log/pods. What cannot be read is left out;
 * `name` then falls back to the engine and short id, or to the path. Never throws for
 * a path it does not recognise.
 *
 * @example
 * identifyCgroup('/libpod_parent/libpod-06ef…').name; // 'web-1'
 */
export function identifyCgroup(path: string, options?: IdentifyCgroupOptions): CgroupIdentity {
  const operation = 'identifyCgroup';
  checkCString(operation, 'path', path);
  checkOptions(operation, options, ['root']);
  const root = options?.root === undefined ? '/' : checkCString(operation, 'options.root', options.root);
  const segments = path.split('/').filter((segment) => segment !== '');
  return kubernetes(path, segments, root) ?? podman(path, segments, root) ?? docker(path, segments, root) ?? containerd(path, segments, root) ?? systemd(path, segments) ?? { path, name: path };
}

/** The last segment matching `pattern`, with its capture groups. */
function lastMatch(segments: string[], pattern: RegExp): { index: number; groups: string[] } | undefined {
  for (let index = segments.length - 1; index >= 0; index--) {
    const match = pattern.exec(segments[index] ?? '');
    if (match) return { index, groups: match.slice(1).map((group) => group ?? '') };
  }
  return undefined;
}

function shortName(engine: string, id: string): string {
  return `${engine} ${id.slice(0, 12)}`;
}

// podman: /libpod_parent/[<pod id>/]libpod-<id> (cgroupfs),
// /machine.slice/[machine-libpod_pod_<pod id>.slice/]libpod-<id>.scope[/container] (systemd).
function podman(path: string, segments: string[], root: string): CgroupIdentity | undefined {
  const found = lastMatch(segments, new RegExp(`^libpod-(${ID})(?:\\.scope)?$`));
  if (!found) return undefined;
  const [containerId = ''] = found.groups;
  const parent = segments[found.index - 1] ?? '';
  const podId = new RegExp(`^machine-libpod_pod_(${ID})\\.slice$`).exec(parent)?.[1] ?? (new RegExp(`^${ID}$`).test(parent) ? parent : undefined);
  // A container's conmon names its storage (`podman --root` may put it anywhere) and the container.
  const monitor = conmonOf(root, containerId);
  const storages = [...(monitor?.storage === undefined ? [] : [join(root, monitor.storage)]), podmanStorage(root)];
  const container = firstDefined(storages, (storage) => podmanContainerNames(storage).get(containerId)) ?? monitor?.name;
  const identity: CgroupIdentity = { path, engine: 'podman', containerId, name: container ?? shortName('podman', containerId) };
  if (container !== undefined) identity.container = container;
  if (podId !== undefined) identity.pod = firstDefined(storages, (storage) => podmanPodName(storage, podId)) ?? podId;
  return identity;
}

function firstDefined<T, R>(items: readonly T[], pick: (item: T) => R | undefined): R | undefined {
  for (const item of items) {
    const picked = pick(item);
    if (picked !== undefined) return picked;
  }
  return undefined;
}

interface Conmon {
  name?: string;
  storage?: string;
}

const CONMON_RESCAN_MS = 1000;
const conmons = new Map<string, { scannedAt: number; byContainer: Map<string, Conmon> }>();

/**
 * What podman's conmon for the container was started with: `-n <name>`, and the
 * storage in `-b <storage>/overlay-containers/<id>/userdata`. The processes are
 * scanned again only when a container is missing, at most once a second.
 */
function conmonOf(root: string, containerId: string): Conmon | undefined {
  let table = conmons.get(root);
  if (table === undefined || (!table.byContainer.has(containerId) && Date.now() - table.scannedAt > CONMON_RESCAN_MS)) {
    table = { scannedAt: Date.now(), byContainer: scanConmons(join(root, 'proc')) };
    conmons.set(root, table);
  }
  return table.byContainer.get(containerId);
}

function scanConmons(proc: string): Map<string, Conmon> {
  const byContainer = new Map<string, Conmon>();
  let entries: string[];
  try {
    entries = readdirSync(proc).filter((name) => /^\d+$/.test(name));
  } catch {
    return byContainer;
  }
  for (const pid of entries) {
    let args: string[];
    try {
      if (readFileSync(join(proc, pid, 'comm'), 'utf8').trim() !== 'conmon') continue;
      args = readFileSync(join(proc, pid, 'cmdline'), 'utf8').split('\0');
    } catch {
      continue; // exited
    }
    const value = (flag: string): string | undefined => {
      const at = args.indexOf(flag);
      return at < 0 ? undefined : args[at + 1];
    };
    const containerId = value('-c');
    if (containerId === undefined) continue;
    const conmon: Conmon = {};
    const name = value('-n');
    if (name !== undefined) conmon.name = name;
    const storage = new RegExp(`^(.+)/overlay-containers/${containerId}/userdata$`).exec(value('-b') ?? '')?.[1];
    if (storage !== undefined) conmon.storage = storage;
    byContainer.set(containerId, conmon);
  }
  return byContainer;
}

/** podman's graphroot: storage.conf's, or the default. */
function podmanStorage(root: string): string {
  const conf = cachedText(join(root, 'etc/containers/storage.conf'));
  const graphroot = conf === undefined ? undefined : /^\s*graphroot\s*=\s*"([^"]+)"/m.exec(conf)?.[1];
  return join(root, graphroot ?? '/var/lib/containers/storage');
}

function podmanContainerNames(storage: string): Map<string, string> {
  return cachedParse(join(storage, 'overlay-containers/containers.json'), (text) => {
    const names = new Map<string, string>();
    const list: unknown = JSON.parse(text);
    if (!Array.isArray(list)) return names;
    for (const entry of list as Array<{ id?: unknown; names?: unknown }>) {
      const name = Array.isArray(entry.names) ? entry.names[0] : undefined;
      if (typeof entry.id === 'string' && typeof name === 'string') names.set(entry.id, name);
    }
    return names;
  }) ?? new Map();
}

/**
 * Pod names live only in podman's state database (BoltDB before podman 5, SQLite
 * after), whose pod records are JSON that starts with the id and then the name.
 */
function podmanPodName(storage: string, podId: string): string | undefined {
  const record = new RegExp(`\\{"id":"${podId}","name":"((?:[^"\\\\]|\\\\.)*)"`);
  for (const database of ['libpod/bolt_state.db', 'db.sql']) {
    const name = cachedParse(join(storage, database), (text) => record.exec(text)?.[1], podId);
    if (name !== undefined) return JSON.parse(`"${name}"`) as string;
  }
  return undefined;
}

// docker: /docker/<id> (cgroupfs), /system.slice/docker-<id>.scope (systemd).
function docker(path: string, segments: string[], root: string): CgroupIdentity | undefined {
  const scope = lastMatch(segments, new RegExp(`^docker-(${ID})\\.scope$`));
  const plain = segments.length >= 2 && segments[segments.length - 2] === 'docker' ? new RegExp(`^(${ID})$`).exec(segments[segments.length - 1] ?? '')?.[1] : undefined;
  const containerId = scope?.groups[0] ?? plain;
  if (containerId === undefined) return undefined;
  const container = dockerName(root, containerId);
  const identity: CgroupIdentity = { path, engine: 'docker', containerId, name: container ?? shortName('docker', containerId) };
  if (container !== undefined) identity.container = container;
  return identity;
}

function dockerName(root: string, containerId: string): string | undefined {
  return cachedParse(join(root, 'var/lib/docker/containers', containerId, 'config.v2.json'), (text) => {
    const name = (JSON.parse(text) as { Name?: unknown }).Name;
    return typeof name === 'string' ? name.replace(/^\//, '') : undefined;
  });
}

// Kubernetes: /kubepods/<qos>/pod<uid>/<id> (cgroupfs), or
// /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid with _>.slice/<runtime>-<id>.scope (systemd).
function kubernetes(path: string, segments: string[], root: string): CgroupIdentity | undefined {
  if (!segments.some((segment) => segment.startsWith('kubepods'))) return undefined;
  const podSegment = lastMatch(segments, /^(?:kubepods(?:-\w+)*-)?pod([0-9a-f_-]{32,36})(?:\.slice)?$/);
  if (!podSegment) return undefined;
  const podUid = (podSegment.groups[0] ?? '').replaceAll('_', '-');
  const leaf = segments[podSegment.index + 1];
  const scoped = leaf === undefined ? undefined : new RegExp(`^(cri-containerd|crio|crio-conmon|docker)-(${ID})\\.scope$`).exec(leaf);
  const containerId = scoped?.[2] ?? (leaf !== undefined && new RegExp(`^${ID}$`).test(leaf) ? leaf : undefined);
  const names = containerId === undefined ? undefined : criNames(root, containerId);
  const runtime = scoped?.[1];
  const engine: CgroupIdentity['engine'] =
    runtime === 'cri-containerd' || names?.engine === 'containerd' ? 'containerd' : runtime?.startsWith('crio') || names?.engine === 'cri-o' ? 'cri-o' : runtime === 'docker' ? 'docker' : 'kubernetes';
  const pod = names?.pod ?? podFromLogs(root, podUid) ?? podUid;
  const identity: CgroupIdentity = { path, engine, pod, name: names?.container === undefined ? pod : `${pod}/${names.container}` };
  if (containerId !== undefined) identity.containerId = containerId;
  if (names?.container !== undefined) identity.container = names.container;
  return identity;
}

interface CriNames {
  engine: 'containerd' | 'cri-o';
  container?: string;
  pod?: string;
}

/** Names from the container's OCI bundle, which both CRI runtimes annotate. */
function criNames(root: string, containerId: string): CriNames | undefined {
  const bundles: Array<[CriNames['engine'], string, [string, string, string]]> = [
    ['containerd', `run/containerd/io.containerd.runtime.v2.task/k8s.io/${containerId}/config.json`, ['io.kubernetes.cri.container-name', 'io.kubernetes.cri.sandbox-namespace', 'io.kubernetes.cri.sandbox-name']],
    ['cri-o', `run/containers/storage/overlay-containers/${containerId}/userdata/config.json`, ['io.kubernetes.container.name', 'io.kubernetes.pod.namespace', 'io.kubernetes.pod.name']],
    ['cri-o', `var/lib/containers/storage/overlay-containers/${containerId}/userdata/config.json`, ['io.kubernetes.container.name', 'io.kubernetes.pod.namespace', 'io.kubernetes.pod.name']],
  ];
  for (const [engine, file, [containerKey, namespaceKey, podKey]] of bundles) {
    const annotations = cachedParse(join(root, file), (text) => (JSON.parse(text) as { annotations?: Record<string, unknown> }).annotations ?? {});
    if (annotations === undefined) continue;
    const text = (key: string): string | undefined => (typeof annotations[key] === 'string' && annotations[key] !== '' ? (annotations[key] as string) : undefined);
    const names: CriNames = { engine };
    const container = text(containerKey);
    if (container !== undefined) names.container = container;
    const [namespace, pod] = [text(namespaceKey), text(podKey)];
    if (pod !== undefined) names.pod = namespace === undefined ? pod : `${namespace}/${pod}`;
    return names;
  }
  return undefined;
}

/** The kubelet keeps each pod's logs in /var/log/pods/<namespace>_<name>_<uid>. */
function podFromLogs(root: string, podUid: string): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync(join(root, 'var/log/pods'));
  } catch {
    return undefined;
  }
  const entry = entries.find((name) => name.endsWith(`_${podUid}`));
  const match = entry === undefined ? undefined : /^([^_]+)_(.+)_[^_]+$/.exec(entry);
  return match ? `${match[1]}/${match[2]}` : undefined;
}

// containerd outside Kubernetes (nerdctl): /system.slice/nerdctl-<id>.scope.
function containerd(path: string, segments: string[], root: string): CgroupIdentity | undefined {
  const found = lastMatch(segments, new RegExp(`^nerdctl-(${ID})\\.scope$`));
  if (!found) return undefined;
  const [containerId = ''] = found.groups;
  const container = cachedParse(join(root, 'run/containerd/io.containerd.runtime.v2.task/default', containerId, 'config.json'), (text) => {
    const name = (JSON.parse(text) as { annotations?: Record<string, unknown> }).annotations?.['nerdctl/name'];
    return typeof name === 'string' ? name : undefined;
  });
  const identity: CgroupIdentity = { path, engine: 'containerd', containerId, name: container ?? shortName('containerd', containerId) };
  if (container !== undefined) identity.container = container;
  return identity;
}

// A systemd unit: the innermost service or scope, else the innermost slice.
function systemd(path: string, segments: string[]): CgroupIdentity | undefined {
  const unit = lastMatch(segments, /^(.+\.(?:service|scope))$/) ?? lastMatch(segments, /^(.+\.slice)$/);
  if (!unit) return undefined;
  return { path, engine: 'systemd', name: unit.groups[0] ?? path };
}

// Metadata files are read again only when they change: top --watch and the exporter
// name the same cgroups every few seconds.
const CACHE_LIMIT = 4096;
const cache = new Map<string, { mtimeMs: number; size: number; value: unknown }>();

function cachedParse<T>(file: string, parse: (text: string) => T, key = ''): T | undefined {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return undefined;
  }
  const cacheKey = `${file}\0${key}`;
  const hit = cache.get(cacheKey);
  if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) return hit.value as T | undefined;
  let value: T | undefined;
  try {
    value = parse(readFileSync(file, 'utf8'));
  } catch {
    value = undefined; // unreadable or malformed: named by id instead
  }
  if (cache.size >= CACHE_LIMIT) cache.clear(); // containers come and go: never grow without bound
  cache.set(cacheKey, { mtimeMs: stat.mtimeMs, size: stat.size, value });
  return value;
}

function cachedText(file: string): string | undefined {
  return cachedParse(file, (text) => text);
}
