import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, type TestContext } from 'vitest';
import { systemPageSize } from '../../lib/kernel/page-size.js';
import { podman, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { coverage } from '../helpers/smaps.js';

export const REPO = resolve(__dirname, '../..');
export const BUILT_LIBRARY = join(REPO, 'build/Release/libksm_preload.so');
export const BUILT_LAUNCHER = join(REPO, 'build/Release/ksm-exec');
/** Where `ksm install-lib` puts the library in a Debian image (it has /usr/lib64). */
export const IMAGE_LIBRARY = '/usr/lib64/libksm_preload.so';
/** Where containers see this checkout and the host's node (bind mounts, read-only). */
export const PACKAGE_IN_CONTAINER = '/ksm/package';
export const NODE_IN_CONTAINER = '/usr/local/bin/node';
/** The workload: seeded blobs, identical across processes and distinct within one. */
export const DEMO_WORKER = `${PACKAGE_IN_CONTAINER}/dist/cjs/analysis/demo-worker.js`;
export const WORKER_MIB = 32;
export const MiB = 2 ** 20;
/** The command that runs the workload inside a container. */
export const WORKER = [NODE_IN_CONTAINER, DEMO_WORKER, String(WORKER_MIB), '42'];
/** The workload's large blobs are 60 % of it; each container must merge at least this much. */
const MERGED_AT_LEAST = 0.4 * WORKER_MIB * MiB;

/** Skips (or fails under KSM_REQUIRE_E2E=1) without root, KSM, podman or the built package. */
export function requireContainers(ctx: TestContext): void {
  requireOrSkip(
    ctx,
    ksmUnavailable() ??
      podmanUnavailable() ??
      [BUILT_LIBRARY, BUILT_LAUNCHER, join(REPO, 'dist/cjs/cli/main.js')].map((file) => (existsSync(file) ? undefined : `${file} is not built (npm run build; npx node-gyp rebuild)`)).find(Boolean),
  );
}

/** Bind mounts that give a container this checkout and the host's node, read-only. */
export function packageMounts(): string[] {
  return [
    '--mount', `type=bind,source=${process.execPath},target=${NODE_IN_CONTAINER},readonly`,
    '--mount', `type=bind,source=${REPO},target=${PACKAGE_IN_CONTAINER},readonly`,
  ];
}

/** A unique name for this run's containers, so parallel checkouts never collide. */
export function uniqueName(kind: string): string {
  return `ksm-test-${kind}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A private build context folder holding the built library and launcher; remove() deletes it. */
export function buildContext(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-container-'));
  copyFileSync(BUILT_LIBRARY, join(dir, 'libksm_preload.so'));
  copyFileSync(BUILT_LAUNCHER, join(dir, 'ksm-exec'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The `ksm` command of this checkout, run on the host. */
export function ksm(args: string[]): string {
  const result = spawnSync(process.execPath, [join(REPO, 'bin/ksm.js'), ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ksm ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** The host pid of a running container's main process. */
export function hostPid(container: string): number {
  return Number(podman(['inspect', '--format', '{{.State.Pid}}', container]).trim());
}

/** Waits until the container's log holds `text`; throws with the log on timeout or exit. */
export async function waitForLog(container: string, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = podman(['logs', container], { allowFailure: true });
    if (`${logs.stdout}${logs.stderr}`.includes(text)) return;
    const state = podman(['inspect', '--format', '{{.State.Status}}', container], { allowFailure: true }).stdout.trim();
    if (Date.now() > deadline || (state !== 'running' && state !== 'created' && state !== '')) {
      throw new Error(`${container} (${state || 'gone'}) never printed ${JSON.stringify(text)}:\n${logs.stdout}${logs.stderr}`);
    }
    await new Promise((done) => setTimeout(done, 250));
  }
}

/** Removes containers, ignoring ones already gone. */
export function removeContainers(names: string[]): void {
  if (names.length > 0) podman(['rm', '--force', '--time', '0', '--ignore', ...names], { allowFailure: true });
}

/** Pages of a process mapped to KSM pages, from the kernel. */
export function mergingPages(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8').trim());
}

/**
 * Checks a container running WORKER from inside (ksm_stat, and LD_PRELOAD when
 * `library` is given) and from the host (smaps `mg`); returns its host pid.
 */
export async function expectMarked(container: string, mode: 'prctl' | 'madvise', library?: string): Promise<number> {
  await waitForLog(container, 'ready');
  const inside = podman(['exec', container, 'cat', '/proc/1/ksm_stat', '/proc/1/environ']);
  if (library !== undefined) expect(inside).toContain(`LD_PRELOAD=${library}`);
  if (mode === 'prctl') expect(inside).toMatch(/ksm_merge_any: yes/);
  expect(inside).toMatch(/ksm_mergeable: yes/);
  const pid = hostPid(container);
  // prctl marks everything; madvise marks what malloc and mmap hand out, the blobs included.
  expect(coverage(pid).mergeableKb * 1024).toBeGreaterThan(WORKER_MIB * MiB * (mode === 'prctl' ? 0.9 : 0.6));
  return pid;
}

/** With ksmd running, waits until each process has merged most of its blobs with the others'. */
export async function expectMergedAcross(pids: number[]): Promise<void> {
  const page = systemPageSize();
  await withKsmd(async () => {
    const merged = await waitFor(() => pids.every((pid) => mergingPages(pid) * page >= MERGED_AT_LEAST), 120_000, 500);
    expect(merged, `merged MiB per container: ${pids.map((pid) => ((mergingPages(pid) * page) / MiB).toFixed(1)).join(', ')}`).toBe(true);
  });
}
