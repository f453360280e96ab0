// The `ksm autotune` daemon: reads the machine every interval, lets the policy
// decide, writes the knobs it asks for, and puts every knob back when it ends.
import { setTimeout as delay } from 'node:timers/promises';
import { KsmError } from '../core/errors.js';
import { checkCString, checkOptionalBoolean, checkOptions } from '../core/validate.js';
import { kernelFeatures } from '../kernel/features.js';
import { readKsmKnob, writeKsmKnob } from '../kernel/sysfs.js';
import { applyKnobs, restoreKnobs, saveKnobs, type KnobSnapshot } from '../kernel/tune.js';
import type { AutotuneDecision as LoggedDecision } from './autotune-log.js';
import { AutotuneLogWriter } from './autotune-log-writer.js';
import {
  decide,
  DEFAULT_AUTOTUNE_SETTINGS,
  initialAutotuneState,
  type AutotuneDecision,
  type AutotunePhase,
  type AutotuneSample,
  type AutotuneSettings,
  type KernelOffer,
} from './autotune-policy.js';
import { MergeableCensus, readAutotuneSample } from './autotune-sample.js';

/** Options of runAutotune(). */
export interface AutotuneOptions {
  settings?: Partial<AutotuneSettings>;
  /** Decide and report, but write no knob. */
  dryRun?: boolean;
  /** Append each decision to this file as a JSON line (the dashboard's state file). */
  stateFile?: string;
  /** Ends the daemon; every knob is put back first. */
  signal?: AbortSignal;
  /** Each decision that changed something, and the final restore. */
  onDecision?: (entry: AutotuneLogEntry) => void;
  /** Every tick's reading and decision, logged or not (benchmarks, debugging). */
  onTick?: (sample: AutotuneSample, decision: AutotuneDecision) => void;
}

/** A decision as logged: the state file's fields plus what autotune saw. */
export interface AutotuneLogEntry extends LoggedDecision {
  phase: AutotunePhase | 'restored';
  dryRun: boolean;
  /** ksmd's CPU over the last interval, percent of one CPU. */
  ksmdCpuPercent?: number;
  savedBytes?: number;
  profitBytes?: number;
  mergeableBytes?: number;
  unscannedBytes?: number;
}

/** What runAutotune() resolves to once signalled. */
export interface AutotuneSummary {
  ticks: number;
  decisions: number;
  /** The knobs as they were at the start, put back at the end (empty in a dry run). */
  restored: KnobSnapshot;
}

const POSITIVE: ReadonlyArray<keyof AutotuneSettings> = ['intervalSeconds', 'maxCpuPercent', 'boostScanSeconds', 'relaxScanSeconds'];

/** Fills in the defaults and checks every setting; RangeError/TypeError name the bad one. */
export function autotuneSettings(overrides: Partial<AutotuneSettings> = {}): AutotuneSettings {
  if (typeof overrides !== 'object' || overrides === null) throw new TypeError('autotune settings must be an object');
  const settings = { ...DEFAULT_AUTOTUNE_SETTINGS };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(name in DEFAULT_AUTOTUNE_SETTINGS)) throw new TypeError(`unknown autotune setting ${JSON.stringify(name)}`);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`autotune setting ${name} must be a finite number`);
    settings[name as keyof AutotuneSettings] = value;
  }
  for (const name of POSITIVE) if (settings[name] <= 0) throw new RangeError(`autotune setting ${name} must be above 0, got ${settings[name]}`);
  if (settings.maxCpuPercent > 100) throw new RangeError(`maxCpuPercent is a share of one CPU (ksmd is one thread): at most 100, got ${settings.maxCpuPercent}`);
  if (settings.thresholdPercent < 0 || settings.thresholdPercent > 100) throw new RangeError(`thresholdPercent must be 0 to 100, got ${settings.thresholdPercent}`);
  if (settings.thresholdMinBytes < 0 || settings.pressurePercent < 0 || settings.recheckSeconds < 0) {
    throw new RangeError('thresholdMinBytes, pressurePercent and recheckSeconds must not be negative');
  }
  return settings;
}

function entryOf(decision: AutotuneDecision, phase: AutotunePhase, sample: AutotuneSample, dryRun: boolean): AutotuneLogEntry {
  const knobs = Object.fromEntries(Object.entries(decision.knobs).filter(([, value]) => value !== undefined)) as Record<string, string | number>;
  return {
    time: new Date().toISOString(),
    action: decision.action,
    reason: decision.reason,
    knobs,
    phase,
    dryRun,
    ...(decision.ksmdCpuPercent === undefined ? {} : { ksmdCpuPercent: Math.round(decision.ksmdCpuPercent * 100) / 100 }),
    savedBytes: sample.pagesSharing * sample.pageSize,
    profitBytes: sample.profitBytes,
    mergeableBytes: sample.mergeablePages * sample.pageSize,
    unscannedBytes: sample.unscannedPages * sample.pageSize,
  };
}

/** Writes what the decision asks for; the advisor is re-entered so it starts from the new advisor_min_pages_to_scan. */
function apply(decision: AutotuneDecision): void {
  const advisorWasOn = readKsmKnob('advisor_mode') === 'scan-time';
  applyKnobs(decision.knobs);
  if (decision.reseedAdvisor && advisorWasOn) {
    writeKsmKnob('advisor_mode', 'none');
    writeKsmKnob('advisor_mode', 'scan-time');
  }
}

/** The options of runAutotune(), checked before the daemon starts: a TypeError names a bad one. */
function checkAutotuneOptions(options: AutotuneOptions): void {
  const operation = 'runAutotune';
  checkOptions(operation, options, ['settings', 'dryRun', 'stateFile', 'signal', 'onDecision', 'onTick']);
  checkOptionalBoolean(operation, 'options.dryRun', options.dryRun);
  if (options.stateFile !== undefined) checkCString(operation, 'options.stateFile', options.stateFile);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError(`${operation}: options.signal must be an AbortSignal`);
  for (const name of ['onDecision', 'onTick'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') throw new TypeError(`${operation}: options.${name} must be a function`);
  }
}

/**
 * Runs autotune until `signal` aborts, then puts back every knob it found at the
 * start (run=0 is the only way it stops ksmd: merged pages stay merged). Needs
 * root. Throws KsmError when KSM is missing or a knob cannot be written; the knobs
 * are restored first then too.
 */
export async function runAutotune(options: AutotuneOptions = {}): Promise<AutotuneSummary> {
  checkAutotuneOptions(options);
  const settings = autotuneSettings(options.settings);
  const features = kernelFeatures();
  if (!features.ksm.available) throw new KsmError('runAutotune', 'ENOTSUP', features.ksm.reason ?? 'this kernel has no KSM');
  const offer: KernelOffer = { advisor: features.advisor.available };
  const dryRun = options.dryRun === true;
  const log = options.stateFile === undefined ? undefined : new AutotuneLogWriter(options.stateFile);
  const census = new MergeableCensus();
  const saved = dryRun ? {} : saveKnobs();
  let state = initialAutotuneState();
  let ticks = 0;
  let decisions = 0;
  const report = (entry: AutotuneLogEntry): void => {
    decisions++;
    log?.append(entry);
    options.onDecision?.(entry);
  };
  try {
    while (!options.signal?.aborted) {
      const sample = readAutotuneSample(census);
      const result = decide(state, sample, settings, offer);
      state = result.state;
      ticks++;
      options.onTick?.(sample, result.decision);
      if (result.decision.changed) {
        if (!dryRun) apply(result.decision);
        report(entryOf(result.decision, state.phase, sample, dryRun));
      }
      try {
        await delay(settings.intervalSeconds * 1000, undefined, { signal: options.signal });
      } catch {
        break;
      }
    }
  } finally {
    if (!dryRun) {
      restoreKnobs(saved);
      report({
        time: new Date().toISOString(),
        action: 'restore',
        reason: 'autotune is ending: every knob is back as it was at the start',
        knobs: saved as Record<string, string>,
        phase: 'restored',
        dryRun,
      });
    }
  }
  return { ticks, decisions, restored: saved };
}
