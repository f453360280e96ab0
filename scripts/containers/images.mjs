// Podman with the project's settings, and the locally built images the container
// tests and the tenants benchmark run: a Debian base made by debootstrap from the
// mirror apt uses here (no registry is reachable), and the tenant image (MediaWiki on
// Apache with mod_php and MariaDB, with generated pages baked in).
//
// Images live in a storage of their own under a cache folder outside the checkout
// (KSM_CONTAINER_CACHE, default /var/cache/ksm-preload), so a fresh clone on the same
// machine reuses them. Each image's tag is a hash of what it is built from: change a
// build file and the next run builds a new one.
//
//   node scripts/containers/images.mjs [base|tenant]   builds (or finds) the images
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireDirLock, releaseDirLock } from '../dir-lock.mjs';

const here = new URL('.', import.meta.url).pathname;
export const CACHE_DIR = process.env.KSM_CONTAINER_CACHE || '/var/cache/ksm-preload';
export const CONTAINERS_CONF = join(here, 'containers.conf');
const STORAGE_CONF = join(CACHE_DIR, 'storage.conf');
const BUILD_LOCK = join(CACHE_DIR, 'build.lock');
const TENANT_CONTEXT = join(here, 'tenant');
const MINUTE = 60_000;

/** The environment every podman call gets: the project's containers.conf and private storage. */
export function podmanEnv() {
  mkdirSync(CACHE_DIR, { recursive: true });
  const storage = [
    '# Written by scripts/containers/images.mjs: the container tests\' own image storage.',
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${join(CACHE_DIR, 'podman', 'storage')}"`,
    // The run root holds state that must not outlive a reboot: on /run, one per storage.
    `runroot = "/run/ksm-preload/podman-${hashOf(CACHE_DIR)}"`,
    '',
  ].join('\n');
  if (!existsSync(STORAGE_CONF) || readFileSync(STORAGE_CONF, 'utf8') !== storage) writeAtomically(STORAGE_CONF, storage);
  return { ...process.env, CONTAINERS_CONF, CONTAINERS_STORAGE_CONF: STORAGE_CONF };
}

/** Why podman containers cannot run here, or undefined when they can. */
export function podmanUnavailable() {
  if (process.platform !== 'linux') return 'podman containers need Linux';
  if (process.getuid?.() !== 0) return 'the container tests run podman as root';
  for (const tool of ['podman', 'runc', 'debootstrap', 'catatonit']) {
    if (!onPath(tool)) return `${tool} is not installed (apt-get install podman runc catatonit debootstrap)`;
  }
  return undefined;
}

export function onPath(tool) {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && existsSync(join(dir, tool)));
}

/**
 * Runs podman with the project's settings; returns stdout. Throws with podman's
 * stderr when it fails, unless `allowFailure` (then returns { status, stdout, stderr }).
 */
export function podman(args, { input, timeoutMs = 5 * MINUTE, allowFailure = false, cwd } = {}) {
  const result = spawnSync('podman', args, {
    env: podmanEnv(),
    input,
    cwd,
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 256 * 2 ** 20,
  });
  if (allowFailure) return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
  if (result.status !== 0) {
    throw new Error(`podman ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`}):\n${(result.stderr ?? '').slice(-4000)}`);
  }
  return result.stdout;
}

function imageExists(tag) {
  return podman(['image', 'exists', tag], { allowFailure: true }).status === 0;
}

/** One apt source entry: where, which suites, which components. */
function aptEntries() {
  const entries = [];
  const files = ['/etc/apt/sources.list'];
  if (existsSync('/etc/apt/sources.list.d')) {
    for (const name of readdirSync('/etc/apt/sources.list.d').sort()) files.push(join('/etc/apt/sources.list.d', name));
  }
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        if (!field('Types').includes('deb')) continue;
        for (const uri of field('URIs')) entries.push({ uri, suites: field('Suites'), components: field('Components') });
      }
    } else if (file.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$/.exec(line.trim());
        if (match) entries.push({ uri: match[1], suites: [match[2]], components: match[3].trim().split(/\s+/) });
      }
    }
  }
  return entries;
}

/**
 * The Debian mirror apt uses on this host (the entry serving this release's main
 * suite), the release, and the host's entries on that mirror's server (updates,
 * security), which the images use too so their packages match the host's.
 */
export function debianSources() {
  const codename = /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
  if (!codename) throw new Error('/etc/os-release names no VERSION_CODENAME: not a Debian release debootstrap knows');
  const entries = aptEntries();
  const main = entries.find((entry) => entry.suites.includes(codename) && entry.components.includes('main'));
  if (!main) throw new Error(`no apt source serves ${codename} main (read /etc/apt/sources.list*)`);
  const host = new URL(main.uri).host;
  const lines = entries
    .filter((entry) => new URL(entry.uri).host === host)
    .flatMap((entry) => entry.suites.map((suite) => `deb ${entry.uri} ${suite} ${entry.components.join(' ')}`));
  return { mirror: main.uri, codename, sourcesList: `${[...new Set(lines)].join('\n')}\n` };
}

function hashOf(...parts) {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 12);
}

/** What `podman import` sets on the base image: a tarball carries no configuration. */
const BASE_IMAGE_CHANGES = ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["/bin/bash"]'];

/** The Debian base image (debootstrap minbase), built once per mirror and release; returns its tag. */
export async function ensureBaseImage() {
  const sources = debianSources();
  const rootfsKey = hashOf(sources.mirror, sources.sourcesList, 'minbase');
  const tag = `localhost/ksm-debian:${sources.codename}-${hashOf(rootfsKey, ...BASE_IMAGE_CHANGES)}`;
  if (imageExists(tag)) return tag;
  return withBuildLock(() => {
    if (imageExists(tag)) return tag;
    const tarball = join(CACHE_DIR, `debian-${sources.codename}-${rootfsKey}.tar`);
    if (!existsSync(tarball)) debootstrapTarball(sources, tarball);
    podman(['import', ...BASE_IMAGE_CHANGES.flatMap((change) => ['--change', change]), tarball, tag], { timeoutMs: 5 * MINUTE });
    for (const name of readdirSync(CACHE_DIR)) {
      if (/^debian-.*\.tar$/.test(name) && join(CACHE_DIR, name) !== tarball) rmSync(join(CACHE_DIR, name), { force: true });
    }
    removeOtherTags(tag);
    return tag;
  });
}

function debootstrapTarball(sources, tarball) {
  const rootfs = join(CACHE_DIR, `rootfs.${process.pid}`);
  rmSync(rootfs, { recursive: true, force: true });
  try {
    run('debootstrap', ['--variant=minbase', sources.codename, rootfs, sources.mirror], 15 * MINUTE);
    writeFileSync(join(rootfs, 'etc/apt/sources.list'), sources.sourcesList);
    // Images stay small and builds stay quiet: no apt caches, no prompts.
    writeFileSync(join(rootfs, 'etc/apt/apt.conf.d/90ksm-image'), 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n');
    run('chroot', [rootfs, 'apt-get', 'clean']);
    run('tar', ['-C', rootfs, '--numeric-owner', '-cf', `${tarball}.tmp`, '.'], 5 * MINUTE);
    renameSync(`${tarball}.tmp`, tarball);
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
    rmSync(`${tarball}.tmp`, { force: true });
  }
}

/** Every file of the tenant build context, hashed in name order, for the image's tag. */
function contextHash(dir) {
  const names = readdirSync(dir).sort();
  return hashOf(...names.flatMap((name) => [name, readFileSync(join(dir, name))]));
}

/** The tenant image (MediaWiki, Apache with mod_php, MariaDB, pages baked in); returns its tag. */
export async function ensureTenantImage() {
  const base = await ensureBaseImage();
  const tag = `localhost/ksm-tenant:${hashOf(base, contextHash(TENANT_CONTEXT))}`;
  if (imageExists(tag)) return tag;
  return withBuildLock(() => {
    if (imageExists(tag)) return tag;
    // Host network for the build only: apt fetches from the host's Debian mirror.
    podman(['build', '--network', 'host', '--build-arg', `BASE=${base}`, '--layers=false', '-t', tag, TENANT_CONTEXT], {
      timeoutMs: 20 * MINUTE,
    });
    removeOtherTags(tag);
    return tag;
  });
}

/** Drops the images an older build of the same name left in the cache (in use ones stay). */
function removeOtherTags(tag) {
  const repository = tag.slice(0, tag.lastIndexOf(':'));
  const tags = podman(['images', '--format', '{{.Repository}}:{{.Tag}}', repository]).split('\n').filter(Boolean);
  for (const old of tags.filter((other) => other !== tag)) podman(['rmi', old], { allowFailure: true });
}

function run(command, args, timeoutMs = MINUTE) {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`}):\n${`${result.stdout}${result.stderr}`.slice(-4000)}`);
  }
  return result.stdout;
}

function writeAtomically(file, text) {
  writeFileSync(`${file}.${process.pid}.tmp`, text);
  renameSync(`${file}.${process.pid}.tmp`, file);
}

/** Builds run one at a time across processes (tests, benchmarks, other checkouts). */
async function withBuildLock(fn) {
  await acquireDirLock(BUILD_LOCK, { waitMs: 30 * MINUTE, pollMs: 1000 });
  try {
    return fn();
  } finally {
    releaseDirLock(BUILD_LOCK);
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const which = process.argv[2] ?? 'tenant';
  const started = Date.now();
  const tag = which === 'base' ? await ensureBaseImage() : await ensureTenantImage();
  console.log(`${tag} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
