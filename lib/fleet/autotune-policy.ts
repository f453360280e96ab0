// What `ksm autotune` decides on each tick, as a pure function of what it read:
// no files, no clock, so every rule can be tested on made-up readings.
import type { KnobChanges } from '../kernel/tune.js';

/** How autotune behaves; `ksm autotune`'s options map onto these. */
export interface AutotuneSettings {
  /** Seconds between readings. */
  intervalSeconds: number;
  /** ksmd's CPU budget, percent of one CPU, never exceeded on average. */
  maxCpuPercent: number;
  /** Memory is short below max(MemTotal × thresholdPercent %, thresholdMinBytes) available, as ksmtuned's KSM_THRES_COEF. */
  thresholdPercent: number;
  /** As ksmtuned's KSM_THRES_CONST. */
  thresholdMinBytes: number;
  /** PSI memory `some` avg10 (percent) at or above which memory counts as short whatever MemAvailable says. */
  pressurePercent: number;
  /** Seconds per full scan while mergeable pages wait for their first look or scans keep adding savings. */
  boostScanSeconds: number;
  /** Seconds per full scan while confirming that nothing more is to be had. */
  relaxScanSeconds: number;
  /** After stopping, seconds until one relaxed scan checks whether pages became mergeable again. */
  recheckSeconds: number;
}

export const DEFAULT_AUTOTUNE_SETTINGS: Readonly<AutotuneSettings> = {
  intervalSeconds: 1,
  maxCpuPercent: 20,
  thresholdPercent: 20,
  thresholdMinBytes: 2048 * 2 ** 20,
  pressurePercent: 10,
  boostScanSeconds: 1,
  relaxScanSeconds: 60,
  recheckSeconds: 600,
};

/** One reading of the machine. */
export interface AutotuneSample {
  /** Milliseconds on a monotonic clock. */
  timeMs: number;
  pageSize: number;
  memTotalBytes: number;
  memAvailableBytes: number;
  /** PSI memory `some` avg10, percent; undefined without /proc/pressure/memory. */
  pressureSomeAvg10: number | undefined;
  /** ksmd's utime + stime since boot; undefined when the thread is not found. */
  ksmdCpuSeconds: number | undefined;
  fullScans: number;
  /** pages_to_scan as the kernel has it now: under the advisor, the advisor's latest choice. */
  pagesToScan: number;
  /** Pages ksmd looked at since boot (6.x); undefined on kernels without the counter. */
  pagesScanned: number | undefined;
  pagesSharing: number;
  /** KSM pages (each the one kept copy of its group). */
  pagesShared: number;
  /** general_profit, or its estimate: bytes saved minus the kernel's bookkeeping. */
  profitBytes: number;
  /** Pages ksmd tracks (one rmap item each): pages it has looked at at least once. */
  rmapItems: number;
  /** Present anonymous pages in mergeable mappings, over every process. */
  mergeablePages: number;
  /** Of those, pages ksmd has not looked at yet: per process, mergeable pages minus its rmap items. */
  unscannedPages: number;
}

/** What the kernel offers that changes how autotune steers. */
export interface KernelOffer {
  /** advisor_mode exists (6.8+): autotune steers the kernel's scan-time advisor instead of pages_to_scan. */
  advisor: boolean;
}

/**
 * `off`: memory is plentiful. `idle`: nothing is mergeable. `boost`: pages wait for
 * ksmd or scans still add savings. `relax`: checking that nothing more merges.
 * `stopped`: profit stopped growing; merged pages stay merged.
 */
export type AutotunePhase = 'off' | 'idle' | 'boost' | 'relax' | 'stopped';

/** The counters at the start of the current full-scan window. */
interface ScanMark {
  fullScans: number;
  pagesScanned: number | undefined;
  pagesSharing: number;
  pagesShared: number;
  profitBytes: number;
  rmapItems: number;
}

/** What autotune carries from one tick to the next. */
export interface AutotuneState {
  phase: AutotunePhase;
  previous: AutotuneSample | undefined;
  mark: ScanMark | undefined;
  /**
   * ksmd's budget not yet spent, in CPU-seconds: negative when it overspent (paid
   * back by a slower pace), positive up to BANK_SECONDS of budget (a burst for the
   * next arrival). It starts at 0, so ksmd's spending never runs ahead of the budget.
   */
  cpuCreditSeconds: number;
  /** ksmd's CPU seconds per page scanned, learnt from its /proc stat and pages_scanned. */
  secondsPerPage: number;
  /** When the phase became `stopped`. */
  stoppedAtMs: number | undefined;
  /** ksmd is paused for the budget's sake. */
  throttled: boolean;
  /** The knobs of the last decision, so small drifts do not rewrite them. */
  knobs: KnobChanges;
}

/** One decision: the knobs to hold, why, and what the CPU accounting saw. */
export interface AutotuneDecision {
  action: 'boost' | 'relax' | 'stop' | 'off' | 'idle' | 'throttle' | 'hold';
  reason: string;
  /** The knobs this decision wants; the daemon writes those that differ from the kernel's. */
  knobs: KnobChanges;
  /** Re-enter advisor_mode so the kernel starts from advisor_min_pages_to_scan now, not after a slow scan. */
  reseedAdvisor: boolean;
  /** Whether the phase, the throttle or the knobs changed: worth a log line. */
  changed: boolean;
  /** ksmd's CPU use over the last interval, percent of one CPU. */
  ksmdCpuPercent: number | undefined;
}

/**
 * ksmd's cost per page until it is measured: 1-4 µs on current x86, the high end
 * while it merges; guessing high keeps the first interval within the budget.
 */
const PRIOR_SECONDS_PER_PAGE = 3e-6;
/** How much unspent budget may be saved for a burst: this many seconds' worth. */
const BANK_SECONDS = 60;
/** Below this share of its budget the next interval is not worth scanning: pause instead. */
const THROTTLE_SHARE = 0.1;
/** ksmd sleeps at least this long between batches (the kernel default is 20). */
const MIN_SLEEP_MS = 10;
const DEFAULT_SLEEP_MS = 20;
const MIN_PAGES_PER_BATCH = 64;
/** Knob values within this ratio of the last ones are kept, so the log records changes, not noise. */
const DRIFT = 0.2;
/**
 * The advisor adjusts only at the end of a full scan, from that scan's duration: when
 * processes arrive after it slowed down, its next scan crawls. Below this share of the
 * wanted batch it is re-entered, which restarts it from advisor_min_pages_to_scan.
 */
const ADVISOR_BEHIND = 0.5;
/**
 * A boost is full scans of all mergeable memory at speed, so it pays only for a large
 * share of new pages or of new savings: below this share of the mergeable pages, new
 * pages and further savings are left to a relaxed scan.
 */
const BOOST_SHARE = 0.05;
const MiB = 2 ** 20;

export function initialAutotuneState(): AutotuneState {
  return {
    phase: 'idle',
    previous: undefined,
    mark: undefined,
    cpuCreditSeconds: 0,
    secondsPerPage: PRIOR_SECONDS_PER_PAGE,
    stoppedAtMs: undefined,
    throttled: false,
    knobs: {},
  };
}

/** The MemAvailable below which memory is worth saving: ksmtuned's rule. */
export function memoryThresholdBytes(settings: AutotuneSettings, memTotalBytes: number): number {
  return Math.max((memTotalBytes * settings.thresholdPercent) / 100, settings.thresholdMinBytes);
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)} MiB`;

/** Progress smaller than this (pages) is noise: volatile pages come and go. */
function pageEpsilon(total: number): number {
  return Math.max(64, total * 0.005);
}

/** Updates the CPU credit and the learnt cost per page; returns ksmd's CPU use over the interval as a fraction. */
function account(state: AutotuneState, sample: AutotuneSample, settings: AutotuneSettings): number | undefined {
  const previous = state.previous;
  if (!previous || previous.ksmdCpuSeconds === undefined || sample.ksmdCpuSeconds === undefined) return undefined;
  const seconds = (sample.timeMs - previous.timeMs) / 1000;
  if (seconds <= 0) return undefined;
  const used = Math.max(0, sample.ksmdCpuSeconds - previous.ksmdCpuSeconds);
  const budget = settings.maxCpuPercent / 100;
  state.cpuCreditSeconds = Math.min(budget * BANK_SECONDS, state.cpuCreditSeconds + budget * seconds - used);
  const scanned = sample.pagesScanned !== undefined && previous.pagesScanned !== undefined ? sample.pagesScanned - previous.pagesScanned : 0;
  // Clock ticks are 10 ms: only a long enough stretch says anything about the cost.
  if (scanned >= 1000 && used >= 0.05) state.secondsPerPage = 0.75 * state.secondsPerPage + 0.25 * (used / scanned);
  return used / seconds;
}

/** Which phase comes next, and why. */
function nextPhase(state: AutotuneState, sample: AutotuneSample, settings: AutotuneSettings): { phase: AutotunePhase; reason: string; judged?: boolean } {
  const threshold = memoryThresholdBytes(settings, sample.memTotalBytes);
  const short = sample.memAvailableBytes < threshold;
  const pressure = sample.pressureSomeAvg10 !== undefined && sample.pressureSomeAvg10 >= settings.pressurePercent;
  if (!short && !pressure) {
    const psi = sample.pressureSomeAvg10 === undefined ? '' : ` and memory pressure ${sample.pressureSomeAvg10.toFixed(1)} % < ${settings.pressurePercent} %`;
    return { phase: 'off', reason: `MemAvailable ${mib(sample.memAvailableBytes)} ≥ threshold ${mib(threshold)}${psi}: memory is not worth saving` };
  }
  const why = short ? `MemAvailable ${mib(sample.memAvailableBytes)} < ${mib(threshold)}` : `memory pressure ${sample.pressureSomeAvg10?.toFixed(1)} % ≥ ${settings.pressurePercent} %`;
  if (sample.mergeablePages === 0) return { phase: 'idle', reason: `${why}, but no process has mergeable memory` };
  const unscanned = sample.unscannedPages > pageEpsilon(sample.mergeablePages);
  const waiting = `${mib(sample.unscannedPages * sample.pageSize)} of ${mib(sample.mergeablePages * sample.pageSize)} mergeable not scanned yet`;
  if (unscanned && sample.unscannedPages >= sample.mergeablePages * BOOST_SHARE) return { phase: 'boost', reason: `${why}; ${waiting}` };
  switch (state.phase) {
    case 'off':
    case 'idle':
      return { phase: 'relax', reason: `${why}; everything mergeable was scanned before: one relaxed scan to see what is left` };
    case 'stopped': {
      if (unscanned) return { phase: 'relax', reason: `${why}; ${waiting}: too few to pay for fast full scans, a relaxed scan reaches them` };
      const since = (sample.timeMs - (state.stoppedAtMs ?? sample.timeMs)) / 1000;
      if (since >= settings.recheckSeconds) return { phase: 'relax', reason: `${why}; ${since.toFixed(0)} s since stopping: re-checking with one relaxed scan` };
      return { phase: 'stopped', reason: 'profit stopped growing' };
    }
    default:
      return scanVerdict(state, sample, why);
  }
}

/**
 * A boost is judged at each full scan's end. A relaxed window starts mid-scan, so it
 * is judged once ksmd looked at every mergeable page at the relaxed pace: a scan's
 * worth of pages_scanned and a scan's end, or two scan ends where pages_scanned is missing.
 */
function wholeScanSince(mark: ScanMark, sample: AutotuneSample, phase: AutotunePhase): boolean {
  const ends = sample.fullScans - mark.fullScans;
  if (phase !== 'relax') return ends >= 1;
  if (sample.pagesScanned === undefined || mark.pagesScanned === undefined) return ends >= 2;
  return ends >= 1 && sample.pagesScanned - mark.pagesScanned >= Math.max(sample.mergeablePages, sample.rmapItems);
}

/**
 * Boost and relax end on what the last full scans added. `judged`: the verdict was
 * about the scans since the mark, so the next window starts now.
 */
function scanVerdict(state: AutotuneState, sample: AutotuneSample, why: string): { phase: AutotunePhase; reason: string; judged?: boolean } {
  const mark = state.mark;
  if (!mark || !wholeScanSince(mark, sample, state.phase)) return { phase: state.phase, reason: `${why}; waiting for a full scan` };
  const sharing = sample.pagesSharing - mark.pagesSharing;
  // First looks that did not merge at once: pages whose twins ksmd has not seen yet
  // merge only on their second look, through the unstable tree.
  const waiting = sample.rmapItems - mark.rmapItems - sharing - (sample.pagesShared - mark.pagesShared);
  const profit = sample.profitBytes - mark.profitBytes;
  const scans = sample.fullScans - mark.fullScans;
  const epsilon = pageEpsilon(Math.max(sample.pagesSharing, sample.mergeablePages));
  const gained = `${scans} full scan${scans === 1 ? '' : 's'} added ${mib(Math.max(0, sharing) * sample.pageSize)} merged, profit ${profit >= 0 ? '+' : '−'}${mib(Math.abs(profit))}`;
  if (state.phase === 'boost') {
    // When a scan merged, the stable tree held the new pages' twins and they merged
    // at first look; what stayed unmerged is likely unique, so a second fast look
    // would buy nothing. Only fresh pages with no twins seen yet are worth one.
    if (sharing <= epsilon && waiting > epsilon) return { phase: 'boost', reason: `${gained} after first looks at ${mib(waiting * sample.pageSize)}: the next scan can merge them`, judged: true };
    return { phase: 'relax', reason: `${gained}: nothing more waits for a look, full scans stop adding savings` };
  }
  if (profit >= sample.mergeablePages * sample.pageSize * BOOST_SHARE) return { phase: 'boost', reason: `${gained}: more to gain, worth fast scans` };
  if (profit > epsilon * sample.pageSize) return { phase: 'relax', reason: `${gained}: more to gain, at the relaxed pace`, judged: true };
  return { phase: 'stopped', reason: `${gained}: profit stopped growing at ${mib(sample.profitBytes)}; merged pages stay merged` };
}

/** Pages per batch and pause that scan `rate` pages a second given the cost per page. */
function batchFor(rate: number, secondsPerPage: number): { pages: number; sleepMs: number } {
  const busy = Math.min(0.95, rate * secondsPerPage);
  // A cycle is the sleep plus the CPU time of the batch: pages = rate × (sleep + pages × cost).
  let sleepMs = DEFAULT_SLEEP_MS;
  let pages = (rate * (sleepMs / 1000)) / (1 - busy);
  if (pages > 20_000) {
    sleepMs = MIN_SLEEP_MS;
    pages = (rate * (sleepMs / 1000)) / (1 - busy);
  }
  if (pages < MIN_PAGES_PER_BATCH) {
    pages = MIN_PAGES_PER_BATCH;
    sleepMs = Math.ceil((MIN_PAGES_PER_BATCH * (1 - busy) * 1000) / Math.max(rate, 1e-3));
  }
  // Rounded towards the slower pace, so the budget is not exceeded by rounding.
  return { pages: Math.max(1, Math.floor(pages)), sleepMs: Math.min(Math.max(MIN_SLEEP_MS, Math.ceil(sleepMs)), 60_000) };
}

/** Keeps the last value when the new one is within `drift` of it. */
function steady(previous: string | number | undefined, next: number, drift = DRIFT): number {
  const before = Number(previous);
  return previous !== undefined && before > 0 && Math.abs(next - before) / before <= drift ? before : next;
}

/** The knobs that scan the mergeable pages once per `scanSeconds`, within what the budget allows this interval. */
function scanKnobs(
  state: AutotuneState,
  sample: AutotuneSample,
  settings: AutotuneSettings,
  kernel: KernelOffer,
  scanSeconds: number,
): { knobs: KnobChanges; capped: boolean; batch: number } | undefined {
  const budget = settings.maxCpuPercent / 100;
  const allowed = Math.min(1, budget + state.cpuCreditSeconds / settings.intervalSeconds);
  if (allowed < budget * THROTTLE_SHARE) return undefined;
  const pages = Math.max(sample.mergeablePages, sample.rmapItems, 1);
  const wanted = pages / scanSeconds;
  const affordable = allowed / state.secondsPerPage;
  const capped = wanted > affordable;
  const target = batchFor(Math.min(wanted, affordable), state.secondsPerPage);
  const ceiling = batchFor(budget / state.secondsPerPage, state.secondsPerPage);
  const sleepMs = steady(state.knobs.sleep_millisecs, target.sleepMs);
  const batch = steady(kernel.advisor ? state.knobs.advisor_min_pages_to_scan : state.knobs.pages_to_scan, target.pages);
  if (!kernel.advisor) return { knobs: { run: 1, pages_to_scan: batch, sleep_millisecs: sleepMs }, capped, batch };
  return {
    knobs: {
      run: 1,
      advisor_mode: 'scan-time',
      advisor_target_scan_time: Math.max(1, Math.round(scanSeconds)),
      advisor_max_cpu: Math.min(100, Math.max(1, Math.floor(settings.maxCpuPercent))),
      // The advisor keeps ksmd above 10 % CPU whatever advisor_max_cpu says; this cap holds smaller budgets.
      // A safety ceiling, not a pace: it moves only when the cost per page moves a lot.
      advisor_max_pages_to_scan: Math.max(batch, steady(state.knobs.advisor_max_pages_to_scan, ceiling.pages, 0.5)),
      advisor_min_pages_to_scan: batch,
      sleep_millisecs: sleepMs,
    },
    capped,
    batch,
  };
}

const sameKnobs = (a: KnobChanges, b: KnobChanges): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([knob, value]) => String(b[knob as keyof KnobChanges]) === String(value));

/**
 * One tick of autotune: from the state and a new reading, the knobs to hold and
 * why. Returns the state for the next tick; `sample` becomes its `previous`.
 */
export function decide(
  state: AutotuneState,
  sample: AutotuneSample,
  settings: AutotuneSettings,
  kernel: KernelOffer,
): { state: AutotuneState; decision: AutotuneDecision } {
  const next: AutotuneState = { ...state };
  const fraction = account(next, sample, settings);
  const ksmdCpuPercent = fraction === undefined ? undefined : fraction * 100;
  const { phase, reason, judged } = nextPhase(state, sample, settings);
  const entered = phase !== state.phase;
  if (entered || judged || !next.mark || sample.fullScans < next.mark.fullScans || (phase === 'boost' && sample.fullScans - next.mark.fullScans >= 1)) {
    next.mark = { fullScans: sample.fullScans, pagesScanned: sample.pagesScanned, pagesSharing: sample.pagesSharing, pagesShared: sample.pagesShared, profitBytes: sample.profitBytes, rmapItems: sample.rmapItems };
  }
  next.phase = phase;
  next.previous = sample;
  if (phase === 'stopped' && entered) next.stoppedAtMs = sample.timeMs;

  let action: AutotuneDecision['action'];
  let knobs: KnobChanges;
  let why = reason;
  let throttled = false;
  let reseedAdvisor = false;
  if (phase === 'off' || phase === 'idle' || phase === 'stopped') {
    action = phase === 'stopped' ? 'stop' : phase;
    // run=0, not 2: what is merged stays merged.
    knobs = { run: 0 };
  } else {
    const scan = scanKnobs(next, sample, settings, kernel, phase === 'boost' ? settings.boostScanSeconds : settings.relaxScanSeconds);
    if (scan === undefined) {
      throttled = true;
      action = 'throttle';
      knobs = { run: 0 };
      why = `ksmd is ${(-next.cpuCreditSeconds).toFixed(2)} CPU-seconds over its ${settings.maxCpuPercent} % budget: pausing it (${reason})`;
    } else {
      action = phase;
      knobs = scan.knobs;
      if (scan.capped) why += ` (pace held to the ${settings.maxCpuPercent} % CPU budget)`;
      const behind = sample.pagesToScan < scan.batch * ADVISOR_BEHIND;
      reseedAdvisor = kernel.advisor && phase === 'boost' && (entered || state.throttled || behind);
      if (reseedAdvisor && behind && !entered) why += `; the advisor's ${sample.pagesToScan} pages per batch lag the ${scan.batch} wanted: restarting it from there`;
    }
  }
  const changed = entered || judged === true || reseedAdvisor || throttled !== state.throttled || !sameKnobs(knobs, state.knobs);
  if (!changed) action = 'hold';
  next.throttled = throttled;
  next.knobs = knobs;
  return { state: next, decision: { action, reason: why, knobs, reseedAdvisor, changed, ksmdCpuPercent } };
}
