import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CliContext } from '../../lib/cli/command.js';
import { main } from '../../lib/cli/main.js';

export const BIN = resolve(__dirname, '../../bin/ksm.js');

/** Options of tests that use withKsmd(): it may wait up to 10 minutes for the machine-wide lock. */
export const WITH_KSMD = { timeout: 11 * 60_000 };

/** An output stream that keeps what was written. */
export class Capture {
  text = '';
  constructor(
    readonly isTTY = false,
    readonly columns = 200,
  ) {}
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs main() in this process with captured streams; env changes apply through process.env. */
export async function runInProcess(args: string[], options: { tty?: boolean; signal?: AbortSignal } = {}): Promise<CliResult> {
  const stdout = new Capture(options.tty);
  const stderr = new Capture();
  const context: CliContext = { stdout, stderr, env: process.env, signal: options.signal ?? new AbortController().signal };
  const code = await main(args, context);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** Runs bin/ksm.js as its own process. */
export function runBin(args: string[], options: SpawnSyncOptions = {}): CliResult {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, ...options });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Files of a fake /sys/kernel/mm/ksm: a value is written as a file; a `{ link }` becomes a symlink. */
export type FakeTree = Record<string, string | { link: string }>;

/** A 6.18-like tree with ksmd stopped and nothing merged. */
export const MODERN_TREE: FakeTree = {
  run: '0',
  pages_to_scan: '100',
  sleep_millisecs: '20',
  merge_across_nodes: '1',
  use_zero_pages: '0',
  max_page_sharing: '256',
  stable_node_chains_prune_millisecs: '2000',
  smart_scan: '1',
  advisor_mode: '[none] scan-time',
  advisor_max_cpu: '70',
  advisor_target_scan_time: '200',
  advisor_min_pages_to_scan: '500',
  advisor_max_pages_to_scan: '30000',
  full_scans: '0',
  pages_scanned: '0',
  pages_shared: '0',
  pages_sharing: '0',
  pages_unshared: '0',
  pages_volatile: '0',
  pages_skipped: '0',
  stable_node_chains: '0',
  stable_node_dups: '0',
  ksm_zero_pages: '0',
  general_profit: '0',
};

/**
 * A root-proof unwritable knob: /proc/sys files with mode 0444 refuse writes even
 * to root (sysctl permission checks use the owner bits for uid 0). Reads "40".
 */
export const READ_ONLY_FOR_ROOT = { link: '/proc/sys/kernel/cap_last_cap' };

/** Builds a fake KSM sysfs folder and points KSM_SYSFS_ROOT at it; returns the folder and a cleanup. */
export function useFakeSysfs(tree: FakeTree): { root: string; cleanup: () => void } {
  const base = mkdtempSync(join(tmpdir(), 'ksm-cli-sysfs-'));
  const root = join(base, 'ksm');
  mkdirSync(root);
  for (const [name, content] of Object.entries(tree)) {
    if (typeof content === 'string') writeFileSync(join(root, name), `${content}\n`);
    else symlinkSync(content.link, join(root, name));
  }
  const previous = process.env.KSM_SYSFS_ROOT;
  process.env.KSM_SYSFS_ROOT = root;
  return {
    root,
    cleanup: () => {
      if (previous === undefined) delete process.env.KSM_SYSFS_ROOT;
      else process.env.KSM_SYSFS_ROOT = previous;
      rmSync(base, { recursive: true, force: true });
    },
  };
}
