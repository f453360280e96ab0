import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireDirLock, releaseDirLock } from '../../scripts/dir-lock.mjs';

const KSM_DIR = '/sys/kernel/mm/ksm';
const LOCK_DIR = '/tmp/ksm-preload-sysfs.lock';
const WRITABLE_KNOBS = [
  'run', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes', 'use_zero_pages', 'max_page_sharing',
  'stable_node_chains_prune_millisecs', 'smart_scan', 'advisor_mode', 'advisor_max_cpu',
  'advisor_target_scan_time', 'advisor_min_pages_to_scan', 'advisor_max_pages_to_scan',
];

export function readKsmCounter(name: string): number {
  return Number(readFileSync(join(KSM_DIR, name), 'utf8').trim());
}

function readKnob(name: string): string | undefined {
  try {
    const raw = readFileSync(join(KSM_DIR, name), 'utf8').trim();
    // advisor_mode reads "[none] scan-time": the bracketed word is the value.
    return /\[(\S+)\]/.exec(raw)?.[1] ?? raw;
  } catch {
    return undefined;
  }
}

function writeKnob(name: string, value: string): void {
  writeFileSync(join(KSM_DIR, name), value);
}

/**
 * Runs `fn` with ksmd started and tuned fast, holding a lock shared by every
 * process on this machine (other test files, other checkouts), and restores
 * every knob afterwards, unmerging what the test merged.
 */
export async function withKsmd<T>(fn: () => Promise<T>, tuning: Record<string, string> = {}): Promise<T> {
  await acquireLock();
  const saved = new Map<string, string>();
  for (const knob of WRITABLE_KNOBS) {
    const value = readKnob(knob);
    if (value !== undefined) saved.set(knob, value);
  }
  try {
    if (saved.get('advisor_mode') === 'scan-time') writeKnob('advisor_mode', 'none');
    writeKnob('pages_to_scan', tuning.pages_to_scan ?? '5000');
    writeKnob('sleep_millisecs', tuning.sleep_millisecs ?? '10');
    for (const [knob, value] of Object.entries(tuning)) {
      if (knob !== 'pages_to_scan' && knob !== 'sleep_millisecs') writeKnob(knob, value);
    }
    writeKnob('run', '1');
    return await fn();
  } finally {
    // run=2 unmerges what the test merged; then every knob goes back as it was.
    writeKnob('run', '2');
    for (const [knob, value] of saved) {
      if (knob === 'run') continue;
      try {
        if (readKnob(knob) !== value) writeKnob(knob, value);
      } catch {
        // Knobs that only change while nothing is merged were already restored above.
      }
    }
    writeKnob('run', saved.get('run') ?? '0');
    releaseLock();
  }
}

/** Polls `probe` until it returns true or the deadline passes; returns whether it did. */
export async function waitFor(probe: () => boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  // KSM_TEST_TIME_SCALE: npm run test:kernels sets 3 in its guests, which run at a third of the speed.
  const deadline = Date.now() + timeoutMs * Number(process.env.KSM_TEST_TIME_SCALE ?? '1');
  while (Date.now() < deadline) {
    if (probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return probe();
}

const acquireLock = (): Promise<void> => acquireDirLock(LOCK_DIR, { waitMs: 10 * 60_000, pollMs: 200 });
const releaseLock = (): void => releaseDirLock(LOCK_DIR);
