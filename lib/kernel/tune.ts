import { join } from 'node:path';
import { KsmError, notSupportedError } from '../core/errors.js';
import { ksmSysfsRoot, readKsmKnob, writeKsmKnob } from './sysfs.js';

/** Every writable file of /sys/kernel/mm/ksm that ksm-preload knows. */
export const KSM_KNOBS = [
  'run',
  'pages_to_scan',
  'sleep_millisecs',
  'merge_across_nodes',
  'use_zero_pages',
  'max_page_sharing',
  'stable_node_chains_prune_millisecs',
  'smart_scan',
  'advisor_mode',
  'advisor_max_cpu',
  'advisor_target_scan_time',
  'advisor_min_pages_to_scan',
  'advisor_max_pages_to_scan',
] as const;

export type KsmKnob = (typeof KSM_KNOBS)[number];

/** Knob values as the kernel prints them (advisor_mode without its brackets); absent knobs are left out. */
export type KnobSnapshot = Partial<Record<KsmKnob, string>>;

/** Knob values to write: numbers or their decimal text, `advisor_mode` as `none` or `scan-time`. */
export type KnobChanges = Partial<Record<KsmKnob, string | number>>;

const UINT_MAX = 2 ** 32 - 1;
const INT_MAX = 2 ** 31 - 1;

type Rule = { choices: readonly string[] } | { min: number; max: number };

/** What the kernel accepts for each knob (mm/ksm.c), checked before anything is written. */
const RULES: Record<KsmKnob, Rule> = {
  run: { choices: ['0', '1', '2'] },
  pages_to_scan: { min: 0, max: UINT_MAX },
  sleep_millisecs: { min: 0, max: UINT_MAX },
  merge_across_nodes: { choices: ['0', '1'] },
  use_zero_pages: { choices: ['0', '1'] },
  max_page_sharing: { min: 2, max: INT_MAX },
  stable_node_chains_prune_millisecs: { min: 0, max: UINT_MAX },
  smart_scan: { choices: ['0', '1'] },
  advisor_mode: { choices: ['none', 'scan-time'] },
  advisor_max_cpu: { min: 1, max: 100 },
  advisor_target_scan_time: { min: 1, max: UINT_MAX },
  advisor_min_pages_to_scan: { min: 1, max: UINT_MAX },
  advisor_max_pages_to_scan: { min: 1, max: UINT_MAX },
};

/** The kernel refuses these with EBUSY while anything is merged, so run=2 (unmerge all) goes first. */
const NEEDS_UNMERGE: readonly KsmKnob[] = ['merge_across_nodes', 'max_page_sharing'];

/** Settings for a fast first pass: about 1.6 GB/s of scanning while boosted. */
export const BOOST_KNOBS: Readonly<KnobChanges> = { run: 1, pages_to_scan: 4000, sleep_millisecs: 10 };

function isKnob(name: string): name is KsmKnob {
  return (KSM_KNOBS as readonly string[]).includes(name);
}

/**
 * Checks every value against what the kernel accepts and returns them as the text to
 * write. Throws TypeError/RangeError naming the knob; writes nothing.
 */
export function validateKnobs(changes: KnobChanges): Map<KsmKnob, string> {
  if (typeof changes !== 'object' || changes === null) throw new TypeError('knob changes must be an object');
  const valid = new Map<KsmKnob, string>();
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) continue;
    if (!isKnob(name)) throw new RangeError(`unknown KSM knob "${name}"; known: ${KSM_KNOBS.join(', ')}`);
    valid.set(name, validateValue(name, value));
  }
  const finalAdvisor = valid.get('advisor_mode') ?? readKsmKnob('advisor_mode');
  if (valid.has('pages_to_scan') && finalAdvisor === 'scan-time') {
    throw new RangeError('pages_to_scan cannot be set while advisor_mode is scan-time (the kernel tunes it); set advisor_mode to none as well');
  }
  return valid;
}

function validateValue(knob: KsmKnob, value: unknown): string {
  if (typeof value !== 'string' && typeof value !== 'number') {
    throw new TypeError(`${knob} must be a number or a string, got ${value === null ? 'null' : typeof value}`);
  }
  const text = String(value);
  const rule = RULES[knob];
  if ('choices' in rule) {
    if (!rule.choices.includes(text)) throw new RangeError(`${knob} must be one of ${rule.choices.join(', ')}, got ${JSON.stringify(text)}`);
    return text;
  }
  if (!/^\d+$/.test(text) || Number(text) < rule.min || Number(text) > rule.max) {
    throw new RangeError(`${knob} must be a whole number from ${rule.min} to ${rule.max}, got ${JSON.stringify(text)}`);
  }
  return String(Number(text));
}

/** Reads every knob this kernel has, for restoreKnobs() later. */
export function saveKnobs(): KnobSnapshot {
  const snapshot: KnobSnapshot = {};
  for (const knob of KSM_KNOBS) {
    const value = readKsmKnob(knob);
    if (value !== undefined) snapshot[knob] = value;
  }
  return snapshot;
}

/**
 * The writes that take `current` to `target`, in an order the kernel accepts:
 * advisor off before pages_to_scan, run=2 before the knobs that need nothing merged,
 * advisor on after its parameters, and run last.
 */
export function planKnobWrites(target: ReadonlyMap<KsmKnob, string>, current: KnobSnapshot): Array<[KsmKnob, string]> {
  const changed = new Map([...target].filter(([knob, value]) => current[knob] !== value));
  // Under scan-time the kernel owns pages_to_scan and refuses writes to it.
  if ((target.get('advisor_mode') ?? current.advisor_mode) === 'scan-time') changed.delete('pages_to_scan');
  const plan: Array<[KsmKnob, string]> = [];
  if (changed.get('advisor_mode') === 'none') plan.push(['advisor_mode', 'none']);
  const unmerge = NEEDS_UNMERGE.some((knob) => changed.has(knob));
  if (unmerge && current.run !== '2') plan.push(['run', '2']);
  for (const knob of [...NEEDS_UNMERGE, ...KSM_KNOBS.filter((name) => !NEEDS_UNMERGE.includes(name))]) {
    const value = changed.get(knob);
    if (value !== undefined && knob !== 'run' && knob !== 'advisor_mode') plan.push([knob, value]);
  }
  if (changed.get('advisor_mode') === 'scan-time') plan.push(['advisor_mode', 'scan-time']);
  const finalRun = target.get('run') ?? current.run;
  if (finalRun !== undefined && (changed.has('run') || (unmerge && finalRun !== '2'))) plan.push(['run', finalRun]);
  return plan;
}

/** Options of applyKnobs(). */
export interface ApplyKnobsOptions {
  /** Undo the writes already made when a later one fails (default true). */
  rollback?: boolean;
}

/**
 * Validates every value, then writes the knobs in a safe order. When a write fails,
 * the knobs already changed are put back (unless `rollback: false`) and the
 * KsmError of the failed write is thrown. Returns the previous values of the knobs
 * it changed, for restoreKnobs().
 */
export function applyKnobs(changes: KnobChanges, options: ApplyKnobsOptions = {}): KnobSnapshot {
  const target = validateKnobs(changes);
  const current = saveKnobs();
  for (const knob of target.keys()) {
    if (current[knob] === undefined) {
      throw notSupportedError(`tune ${knob}`, `this kernel has no ${join(ksmSysfsRoot(), knob)}`);
    }
  }
  const previous: KnobSnapshot = {};
  for (const [knob, value] of planKnobWrites(target, current)) {
    try {
      writeKsmKnob(knob, value);
    } catch (error) {
      if (options.rollback !== false) rollBack(previous, error);
      throw error;
    }
    previous[knob] ??= current[knob];
  }
  return previous;
}

function rollBack(previous: KnobSnapshot, cause: unknown): void {
  try {
    restoreKnobs(previous);
  } catch (rollbackError) {
    const failed = cause instanceof Error ? cause.message : String(cause);
    const undo = rollbackError instanceof Error ? rollbackError.message : String(rollbackError);
    throw new KsmError('applyKnobs', 'EIO', `${failed}; rolling back also failed: ${undo}`, { cause });
  }
}

/**
 * Puts the knobs of a snapshot back in a safe order (run=2 first when a knob needs
 * nothing merged). Tries every knob even when one fails, then throws a KsmError
 * naming each that could not be restored.
 */
export function restoreKnobs(snapshot: KnobSnapshot): void {
  const target = new Map(KSM_KNOBS.flatMap((knob) => (snapshot[knob] === undefined ? [] : [[knob, snapshot[knob]] as const])));
  const failures: string[] = [];
  for (const [knob, value] of planKnobWrites(target, saveKnobs())) {
    try {
      writeKsmKnob(knob, value);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : `${knob}: ${String(error)}`);
    }
  }
  if (failures.length > 0) throw new KsmError('restoreKnobs', 'EIO', `could not restore ${failures.join('; ')}`);
}

/** Options of boostKnobs(). */
export interface BoostOptions {
  /** Ends the boost early (the previous settings are restored then too). */
  signal?: AbortSignal;
  /** Called about once a second with the milliseconds left. */
  onTick?: (remainingMs: number) => void;
}

/**
 * The settings of a boost: BOOST_KNOBS overridden by `changes`, with the advisor
 * switched off when it would refuse pages_to_scan.
 */
export function boostSettings(changes: KnobChanges = {}): KnobChanges {
  const settings: KnobChanges = { ...BOOST_KNOBS, ...changes };
  if (settings.advisor_mode === undefined && readKsmKnob('advisor_mode') === 'scan-time') settings.advisor_mode = 'none';
  return settings;
}

/**
 * Applies boostSettings(changes) for `durationMs`, then restores the previous
 * values, also when `signal` aborts first. Resolves to whether the full duration ran.
 */
export async function boostKnobs(changes: KnobChanges, durationMs: number, options: BoostOptions = {}): Promise<boolean> {
  if (!Number.isFinite(durationMs) || durationMs <= 0) throw new RangeError(`boost duration must be a positive number of milliseconds, got ${durationMs}`);
  const previous = applyKnobs(boostSettings(changes));
  try {
    return await waitOrAbort(durationMs, options);
  } finally {
    restoreKnobs(previous);
  }
}

function waitOrAbort(durationMs: number, { signal, onTick }: BoostOptions): Promise<boolean> {
  const end = Date.now() + durationMs;
  return new Promise((resolve) => {
    const finish = (completed: boolean): void => {
      clearInterval(ticker);
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(completed);
    };
    const onAbort = (): void => finish(false);
    const timer = setTimeout(() => finish(true), durationMs);
    const ticker = setInterval(() => onTick?.(Math.max(0, end - Date.now())), 1000);
    if (signal?.aborted) return finish(false);
    signal?.addEventListener('abort', onAbort, { once: true });
    onTick?.(durationMs);
  });
}

/**
 * Parses a duration such as `90s`, `10m`, `1h30m` or `500ms` (a bare number is
 * seconds) into milliseconds.
 */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (trimmed === '' || parts.map((part) => part[0]).join('') !== trimmed) {
    throw new RangeError(`cannot read duration ${JSON.stringify(text)}: use forms like 90s, 10m, 1h30m or 500ms`);
  }
  const total = parts.reduce((sum, part) => sum + Number(part[1]) * (units[part[2] ?? 's'] ?? 0), 0);
  if (total <= 0) throw new RangeError(`duration ${JSON.stringify(text)} must be longer than zero`);
  return total;
}
