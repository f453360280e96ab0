// The public API of ksm-preload: every name a user may depend on, listed once.
// Anything not exported here is internal and may change without notice;
// test/api/public-api.test.ts holds the checked list.

// Errors.
export { KsmError, type KsmErrorCode, type KsmErrorDetails, type ErrnoCode, type KsmErrorExtraCode } from './core/errors.js';
export { setStrict, type StrictOption, type Unsupported } from './core/capability.js';

// What works on this machine.
export { ksmSupport, type KsmSupport } from './diagnosis/support.js';
export { doctorChecks, mergeWarnings, type DoctorCheck, type MergeWarning } from './diagnosis/doctor.js';

// Marking memory mergeable from Node.
export { markMergeable, unmarkMergeable, type MergeableData, type MarkOptions, type MarkResult, type MarkUnsupported } from './marking/mark.js';
export { allocMergeable, allocUnmergeable, type AllocFill, type AllocOptions } from './marking/alloc.js';
export {
  enableProcessMerging,
  disableProcessMerging,
  isProcessMerging,
  markProcessMergeable,
  keepProcessMergeable,
  type ProcessMergingResult,
  type ProcessMarkResult,
  type ProcessMarkUnsupported,
  type KeepMergeableOptions,
  type KeepMergeableHandle,
} from './marking/process-merging.js';
export { execInPlace } from './marking/exec.js';

// Merging in a process that is already running (ptrace).
export { attachProcess, detachProcess, SAME_DOMAIN_WARNING, type AttachMode, type AttachOptions, type AttachResult } from './attach/attach.js';

// Reading what KSM does.
export { systemKsmStats, KSM_COUNTERS, type KsmCounter, type SystemKsmStats } from './kernel/system-stats.js';
export { processKsmStats, type ProcessKsmStats, type ProcessKsmStatsOptions } from './process/process-stats.js';
export { ksmProcesses, groupByCgroup, type KsmProcessList, type ProcessKsmRow, type CgroupKsmRow, type OptInMethod } from './process/top.js';
export { fairShareSaved, type FairShare } from './process/fair-share.js';
export { identifyCgroup, type CgroupIdentity, type IdentifyCgroupOptions } from './process/cgroups.js';

// Tuning ksmd.
export {
  KSM_KNOBS,
  saveKnobs,
  applyKnobs,
  restoreKnobs,
  boostKnobs,
  type KsmKnob,
  type KnobSnapshot,
  type KnobChanges,
  type ApplyKnobsOptions,
  type BoostOptions,
} from './kernel/tune.js';
export { persistKnobs, type PersistMechanism, type PersistResult } from './kernel/persist.js';

// Watching a fleet: the Prometheus exporter and its dashboard.
export { startExporter, DEFAULT_EXPORTER_PORT, type ExporterOptions, type RunningExporter } from './fleet/exporter.js';
export type { MetricNames } from './fleet/metrics.js';

// Pacing ksmd without anyone watching: autotune and its systemd unit.
export { runAutotune, autotuneSettings, type AutotuneOptions, type AutotuneSummary, type AutotuneLogEntry } from './fleet/autotune.js';
export { DEFAULT_AUTOTUNE_SETTINGS, type AutotuneSettings } from './fleet/autotune-policy.js';
export { installAutotuneUnit, autotuneUnitText } from './fleet/autotune-unit.js';

// Deploying the preload library.
export { preloadLibrary, launcher, type BuiltFile } from './core/paths.js';
export { installPreloadLibrary } from './deploy/install-lib.js';
export { initSnippet, SNIPPET_FORMATS, type SnippetFormat, type SnippetOptions, type PreloadMode } from './deploy/snippets.js';

// Predicting and showing the saving.
export { analyzeMemory, type MemoryAnalysis, type ProcessAnalysis, type IdealSaving, type AnalyzeTarget, type AddressRange } from './analysis/analyze.js';
export { runDemo, type DemoMode, type DemoOptions, type DemoSample, type DemoResult, type DemoWorkerResult } from './analysis/demo.js';
