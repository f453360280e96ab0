import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const KSM_DIR = '/sys/kernel/mm/ksm';

/** Knob values for a machine without KSM, so the fake tree never depends on the host. */
const DEFAULTS: Record<string, string> = {
  run: '0', pages_to_scan: '100', sleep_millisecs: '20', merge_across_nodes: '1', use_zero_pages: '0',
  max_page_sharing: '256', stable_node_chains_prune_millisecs: '2000', smart_scan: '1',
  advisor_mode: '[none] scan-time', full_scans: '0', pages_shared: '0', pages_sharing: '0',
  pages_unshared: '0', pages_volatile: '0', general_profit: '0', ksm_zero_pages: '0',
};

/**
 * A copy of /sys/kernel/mm/ksm in a temporary folder, for KSM_SYSFS_ROOT: the
 * code under test reads and writes it as it would the kernel's, and nothing it
 * does reaches the real knobs.
 */
export function fakeSysfs(): string {
  const root = mkdtempSync(join(tmpdir(), 'ksm-fake-sysfs-'));
  let names: string[];
  try {
    names = readdirSync(KSM_DIR);
  } catch {
    names = [];
  }
  for (const name of names) {
    try {
      writeFileSync(join(root, name), readFileSync(join(KSM_DIR, name)));
    } catch {
      // Unreadable counters stay absent, as on an old kernel.
    }
  }
  if (names.length === 0) for (const [name, value] of Object.entries(DEFAULTS)) writeFileSync(join(root, name), `${value}\n`);
  return root;
}

/** Every file of a tree and its content, to prove that nothing changed. */
export function snapshotTree(root: string): Record<string, string> {
  const snapshot: Record<string, string> = {};
  for (const name of readdirSync(root).sort()) snapshot[name] = readFileSync(join(root, name), 'utf8');
  return snapshot;
}

/** The values as the kernel means them: trimmed, `[none] scan-time` read as `none`. A restore writes "100", the kernel prints "100\n". */
export function knobValues(root: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, text] of Object.entries(snapshotTree(root))) values[name] = /\[(\S+)\]/.exec(text)?.[1] ?? text.trim();
  return values;
}
