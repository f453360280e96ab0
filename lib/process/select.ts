import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KsmError } from '../core/errors.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * The processes of a cgroup and of its descendants. `path` is a folder of the cgroup
 * file system (`/sys/fs/cgroup/...`), or a cgroup path as /proc/PID/cgroup prints it
 * (`/system.slice/redis.service`), looked up in the v2 hierarchy (mounted at
 * /sys/fs/cgroup, or at /sys/fs/cgroup/unified on hybrid systems) and then in
 * systemd's v1 hierarchy.
 */
export function cgroupPids(path: string): number[] {
  if (typeof path !== 'string' || path === '') throw new TypeError('cgroup path must be a non-empty string');
  const candidates = path.startsWith(`${CGROUP_ROOT}/`)
    ? [path]
    : ['', 'unified', 'systemd'].map((hierarchy) => join(CGROUP_ROOT, hierarchy, path));
  const dir = candidates.find((candidate) => existsSync(join(candidate, 'cgroup.procs'))) ?? candidates[0] ?? path;
  const pids: number[] = [];
  collectCgroup(dir, pids);
  return pids;
}

function collectCgroup(dir: string, pids: number[]): void {
  let procs: string;
  try {
    procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
  } catch (error) {
    throw KsmError.fromNode('cgroupPids', error, `${dir} is not a cgroup (cannot read cgroup.procs: ${(error as Error).message})`);
  }
  for (const line of procs.split('\n')) if (line !== '') pids.push(Number(line));
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) collectCgroup(join(dir, entry.name), pids);
  }
}

/** Every process except this one and kernel threads (which have no memory of their own). */
export function allUserPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => pid !== process.pid && !isKernelThread(pid));
}

function isKernelThread(pid: number): boolean {
  try {
    // Kernel threads have an empty command line; so do zombies, which have no memory either.
    return readFileSync(`/proc/${pid}/cmdline`).length === 0;
  } catch {
    return true;
  }
}

/** The process's command name, or undefined once it is gone. */
export function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
