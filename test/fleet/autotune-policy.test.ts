import { describe, expect, it } from 'vitest';
import {
  decide,
  DEFAULT_AUTOTUNE_SETTINGS,
  initialAutotuneState,
  memoryThresholdBytes,
  type AutotuneSample,
  type AutotuneSettings,
  type AutotuneState,
  type KernelOffer,
} from '../../lib/fleet/autotune-policy.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const PAGE = 4096;
const NO_ADVISOR: KernelOffer = { advisor: false };
const ADVISOR: KernelOffer = { advisor: true };
/** Memory counts as short whatever MemAvailable says, so the rules after the gate can be seen. */
const SHORT: AutotuneSettings = { ...DEFAULT_AUTOTUNE_SETTINGS, thresholdPercent: 100 };
/** ksmd's cost per page before autotune has measured it. */
const PRIOR = initialAutotuneState().secondsPerPage;

/** A 16 GiB machine with 1 GiB mergeable, all of it scanned, nothing merged, ksmd idle; each full scan looks at every page. */
function sample(overrides: Partial<AutotuneSample> = {}): AutotuneSample {
  const fullScans = overrides.fullScans ?? 10;
  return {
    pagesScanned: 1_000_000 + (fullScans - 10) * 262_144,
    timeMs: 0,
    pageSize: PAGE,
    memTotalBytes: 16 * GiB,
    memAvailableBytes: 2 * GiB,
    pressureSomeAvg10: 0,
    ksmdCpuSeconds: 100,
    fullScans: 10,
    pagesToScan: 100_000,
    pagesSharing: 0,
    pagesShared: 0,
    profitBytes: 0,
    rmapItems: 262_144,
    mergeablePages: 262_144,
    unscannedPages: 0,
    ...overrides,
  };
}

/** Feeds readings one after another, `intervalSeconds` apart, and returns each decision. */
function run(readings: Array<Partial<AutotuneSample>>, settings = SHORT, offer = NO_ADVISOR, start: AutotuneState = initialAutotuneState()) {
  let state = start;
  return readings.map((reading, index) => {
    const result = decide(state, sample({ timeMs: index * settings.intervalSeconds * 1000, ...reading }), settings, offer);
    state = result.state;
    return result;
  });
}

describe('memory worth saving', () => {
  it('is ksmtuned\'s threshold: max(MemTotal × 20 %, 2048 MiB)', () => {
    expect(memoryThresholdBytes(DEFAULT_AUTOTUNE_SETTINGS, 16 * GiB)).toBe(3.2 * GiB);
    expect(memoryThresholdBytes(DEFAULT_AUTOTUNE_SETTINGS, 4 * GiB)).toBe(2048 * MiB);
  });

  it('plenty available and no pressure: ksmd stays off (run=0), with the figures in the reason', () => {
    const [first] = run([{ memAvailableBytes: 12 * GiB, unscannedPages: 262_144 }], DEFAULT_AUTOTUNE_SETTINGS);
    expect(first?.decision.action).toBe('off');
    expect(first?.decision.knobs).toEqual({ run: 0 });
    expect(first?.decision.reason).toMatch(/MemAvailable 12288 MiB ≥ threshold 3277 MiB/);
  });

  it('below the threshold, ksmd runs', () => {
    const [first] = run([{ memAvailableBytes: 3 * GiB, unscannedPages: 262_144 }], DEFAULT_AUTOTUNE_SETTINGS);
    expect(first?.decision.action).toBe('boost');
    expect(first?.decision.knobs.run).toBe(1);
  });

  it('PSI memory pressure runs ksmd even with plenty available', () => {
    const [first] = run([{ memAvailableBytes: 12 * GiB, pressureSomeAvg10: 25, unscannedPages: 262_144 }], DEFAULT_AUTOTUNE_SETTINGS);
    expect(first?.decision.action).toBe('boost');
    expect(first?.decision.reason).toMatch(/memory pressure 25.0 % ≥ 10 %/);
  });

  it('without PSI the threshold alone decides', () => {
    const [first] = run([{ memAvailableBytes: 12 * GiB, pressureSomeAvg10: undefined }], DEFAULT_AUTOTUNE_SETTINGS);
    expect(first?.decision.action).toBe('off');
    expect(first?.decision.reason).not.toMatch(/pressure/);
  });

  it('nothing mergeable: idle, run=0', () => {
    const [first] = run([{ mergeablePages: 0, rmapItems: 0 }]);
    expect(first?.decision.action).toBe('idle');
    expect(first?.decision.knobs).toEqual({ run: 0 });
  });
});

describe('boost, relax, stop', () => {
  it('boosts while mergeable pages are unscanned, at a pace that scans them all in boostScanSeconds', () => {
    // 256 MiB: within the budget at that pace.
    const [first] = run([{ mergeablePages: 65_536, rmapItems: 40_000, unscannedPages: 25_536 }]);
    expect(first?.decision.action).toBe('boost');
    expect(first?.decision.reason).toMatch(/100 MiB of 256 MiB mergeable not scanned yet/);
    expect(first?.decision.reason).not.toMatch(/budget/);
    const { pages_to_scan: pages, sleep_millisecs: sleepMs } = first?.decision.knobs ?? {};
    // Pages per second, as the kernel paces them: one batch per sleep plus the batch's own CPU time at the prior cost.
    const rate = Number(pages) / (Number(sleepMs) / 1000 + Number(pages) * PRIOR);
    expect(rate).toBeGreaterThan((65_536 / DEFAULT_AUTOTUNE_SETTINGS.boostScanSeconds) * 0.9);
    expect(rate).toBeLessThan((65_536 / DEFAULT_AUTOTUNE_SETTINGS.boostScanSeconds) * 1.1);
  });

  it('a few unscanned pages (volatile noise) do not boost', () => {
    const [first] = run([{ unscannedPages: 500 }]);
    expect(first?.decision.action).toBe('relax');
  });

  it('boosts until every page had its looks, relaxes once a scan merged and nothing waits, then stops', () => {
    const results = run([
      { unscannedPages: 200_000, rmapItems: 62_144 },
      // One full scan: first looks at fresh pages with no twins seen yet; they merge on their second look.
      { fullScans: 11, rmapItems: 262_144 },
      // The next merges them: nothing more waits for a look.
      { fullScans: 12, rmapItems: 262_144, pagesSharing: 100_000, pagesShared: 50_000, profitBytes: 100_000 * PAGE },
      // Relaxed: a scan end after only part of a scan's pages says nothing yet...
      { fullScans: 13, pagesScanned: 1_000_000 + 2 * 262_144 + 100_000, pagesSharing: 100_010, pagesShared: 50_000, profitBytes: 100_010 * PAGE },
      // ...a whole scan's worth of pages at the relaxed pace that adds nothing stops.
      { fullScans: 13, pagesScanned: 1_000_000 + 3 * 262_144 + 10, pagesSharing: 100_020, pagesShared: 50_000, profitBytes: 100_020 * PAGE },
    ]);
    expect(results.map((r) => r.state.phase)).toEqual(['boost', 'boost', 'relax', 'relax', 'stopped']);
    expect(results.map((r) => r.decision.action)).toEqual(['boost', expect.stringMatching(/boost|hold/), 'relax', expect.stringMatching(/relax|hold/), 'stop']);
    expect(results[1]?.decision.reason).toMatch(/after first looks at 781 MiB: the next scan can merge them/);
    expect(results[2]?.decision.reason).toMatch(/added 391 MiB merged.*nothing more waits/);
    expect(results[4]?.decision.reason).toMatch(/profit stopped growing/);
    // Stopping is run=0, never run=2: merged pages stay merged.
    expect(results[4]?.decision.knobs).toEqual({ run: 0 });
    // Relaxed is slower than boosted.
    expect(Number(results[2]?.decision.knobs.pages_to_scan)).toBeLessThan(Number(results[0]?.decision.knobs.pages_to_scan));
  });

  it('a scan that merged new pages at first look relaxes at once: what stayed unmerged is likely unique', () => {
    const results = run([
      { unscannedPages: 60_000, rmapItems: 202_144 },
      { fullScans: 11, rmapItems: 262_144, pagesSharing: 30_000, profitBytes: 30_000 * PAGE },
    ]);
    expect(results.map((r) => r.decision.action)).toEqual(['boost', 'relax']);
  });

  it('a full scan that adds nothing relaxes', () => {
    const results = run([{ unscannedPages: 60_000, rmapItems: 202_144 }, { fullScans: 11, rmapItems: 202_144 }]);
    expect(results.map((r) => r.decision.action)).toEqual(['boost', 'relax']);
  });

  it('a relaxed scan that still gains profit boosts again', () => {
    const results = run([{ fullScans: 11 }, { fullScans: 12, pagesSharing: 50_000, profitBytes: 50_000 * PAGE }]);
    expect(results.map((r) => r.decision.action)).toEqual(['relax', 'boost']);
    expect(results[1]?.decision.reason).toMatch(/more to gain/);
  });

  it('a relaxed scan that gains a little scans once more at the relaxed pace, then stops', () => {
    const results = run([
      { fullScans: 11 },
      // 8 MiB more merged of 1 GiB mergeable: worth another look, not worth fast full scans.
      { fullScans: 12, pagesSharing: 2_000, profitBytes: 2_000 * PAGE },
      { fullScans: 13, pagesSharing: 2_000, profitBytes: 2_000 * PAGE },
    ]);
    expect(results.map((r) => r.state.phase)).toEqual(['relax', 'relax', 'stopped']);
    expect(results[1]?.decision.reason).toMatch(/more to gain, at the relaxed pace/);
    expect(results[1]?.decision.changed).toBe(true);
  });

  it('after stopping, a few new pages are left to a relaxed scan: a boost would be fast full scans of everything for them', () => {
    const stopped = run([{ fullScans: 11 }, { fullScans: 12 }]).at(-1)?.state as AutotuneState;
    const { decision } = decide(stopped, sample({ timeMs: 10_000, fullScans: 13, unscannedPages: 5_000 }), SHORT, NO_ADVISOR);
    expect(decision.action).toBe('relax');
    expect(decision.reason).toMatch(/20 MiB of 1024 MiB mergeable not scanned yet: too few to pay for fast full scans/);
  });

  it('after stopping, new mergeable memory boosts at once, and otherwise it re-checks after recheckSeconds', () => {
    const settings = { ...SHORT, recheckSeconds: 60 };
    const stopped = run([{ fullScans: 11 }, { fullScans: 12 }], settings).at(-1)?.state;
    expect(stopped?.phase).toBe('stopped');
    const later = (seconds: number, reading: Partial<AutotuneSample> = {}) =>
      decide(stopped as AutotuneState, sample({ timeMs: 10_000 + seconds * 1000, fullScans: 13, ...reading }), settings, NO_ADVISOR).decision;
    expect(later(5).action).toBe('hold');
    expect(later(5, { unscannedPages: 20_000 }).action).toBe('boost');
    expect(later(61).action).toBe('relax');
    expect(later(61).reason).toMatch(/re-checking/);
  });

  it('a drift of a few percent in mergeable memory rewrites no knob', () => {
    // ksmd spends exactly its budget: the pace the budget allows stays put.
    const budget = (SHORT.maxCpuPercent / 100) * SHORT.intervalSeconds;
    const results = run([{ unscannedPages: 200_000 }, { unscannedPages: 190_000, mergeablePages: 270_000, ksmdCpuSeconds: 100 + budget }]);
    expect(results[1]?.decision.action).toBe('hold');
    expect(results[1]?.decision.changed).toBe(false);
  });
});

describe('the CPU budget', () => {
  const FIVE_SECONDS = { ...SHORT, intervalSeconds: 5 };
  it('caps the pace at what the budget buys at the measured cost per page', () => {
    // 4 GiB mergeable, all unscanned: 5 s per scan would need over 60 % CPU at the prior cost.
    const big = { mergeablePages: 1_048_576, rmapItems: 0, unscannedPages: 1_048_576 };
    const settings = { ...FIVE_SECONDS, maxCpuPercent: 5 };
    const [first] = run([big], settings);
    expect(first?.decision.reason).toMatch(/held to the 5 % CPU budget/);
    const { pages_to_scan: pages, sleep_millisecs: sleepMs } = first?.decision.knobs ?? {};
    const busy = (Number(pages) * PRIOR) / (Number(sleepMs) / 1000 + Number(pages) * PRIOR);
    expect(busy).toBeLessThanOrEqual(0.05 * 1.01);
    expect(busy).toBeGreaterThan(0.05 * 0.7);
  });

  it('learns the cost per page from ksmd\'s CPU time and pages_scanned, and slows down when pages cost more', () => {
    const settings = { ...FIVE_SECONDS, maxCpuPercent: 10 };
    const results = run(
      [
        { unscannedPages: 262_144, rmapItems: 0 },
        // 5 s later ksmd used 0.5 CPU-s (its whole 10 % budget) for 50 000 pages: 10 µs each.
        { unscannedPages: 200_000, rmapItems: 62_144, ksmdCpuSeconds: 100.5, pagesScanned: 1_050_000 },
      ],
      settings,
    );
    expect(results[1]?.state.secondsPerPage).toBeGreaterThan(PRIOR * 1.5);
    expect(Number(results[1]?.decision.knobs.pages_to_scan) / Number(results[1]?.decision.knobs.sleep_millisecs)).toBeLessThan(
      Number(results[0]?.decision.knobs.pages_to_scan) / Number(results[0]?.decision.knobs.sleep_millisecs),
    );
    expect(results[1]?.decision.ksmdCpuPercent).toBeCloseTo(10, 5);
  });

  it('pauses ksmd (run=0) while it is over budget, and resumes once the debt is paid', () => {
    const settings = { ...FIVE_SECONDS, maxCpuPercent: 10 };
    const results = run(
      [
        { unscannedPages: 262_144, rmapItems: 0 },
        // ksmd burnt 3 CPU-s in 5 s: 2.5 over its 0.5 budget.
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
        { unscannedPages: 200_000, ksmdCpuSeconds: 103, pagesScanned: 1_100_000 },
      ],
      settings,
    );
    expect(results[1]?.decision.action).toBe('throttle');
    expect(results[1]?.decision.knobs).toEqual({ run: 0 });
    expect(results[1]?.decision.reason).toMatch(/2.50 CPU-seconds over its 10 % budget/);
    // Each idle interval pays 0.5 back: once the debt is gone ksmd runs again.
    const resumed = results.findIndex((r, i) => i > 1 && r.decision.knobs.run === 1);
    expect(resumed).toBe(6);
    // By then ksmd's 3 CPU-s are spread over 30 s: no more than the 10 % budget on average.
    expect(3 / (resumed * settings.intervalSeconds)).toBeLessThanOrEqual(settings.maxCpuPercent / 100);
  });

  it('unspent budget is saved for a burst, a minute\'s worth at most: a quiet hour buys no more', () => {
    const settings = { ...FIVE_SECONDS, maxCpuPercent: 10 };
    const results = run([{ unscannedPages: 262_144 }, { unscannedPages: 262_144, timeMs: 3_600_000 }], settings);
    expect(results[1]?.state.cpuCreditSeconds).toBeCloseTo(0.1 * 60, 9);
    // The burst: more than the budget this interval, at most one CPU.
    const { pages_to_scan: pages, sleep_millisecs: sleepMs } = results[1]?.decision.knobs ?? {};
    const busy = (Number(pages) * PRIOR) / (Number(sleepMs) / 1000 + Number(pages) * PRIOR);
    expect(busy).toBeGreaterThan(0.1);
    expect(busy).toBeLessThanOrEqual(1);
  });

  it('the first interval gets the budget and no more: the saving starts at 0', () => {
    const [first] = run([{ mergeablePages: 4_000_000, rmapItems: 0, unscannedPages: 4_000_000 }], FIVE_SECONDS);
    const { pages_to_scan: pages, sleep_millisecs: sleepMs } = first?.decision.knobs ?? {};
    const busy = (Number(pages) * PRIOR) / (Number(sleepMs) / 1000 + Number(pages) * PRIOR);
    expect(busy).toBeLessThanOrEqual(FIVE_SECONDS.maxCpuPercent / 100 + 1e-9);
  });
});

describe('with the kernel\'s scan-time advisor', () => {
  it('steers the advisor and never writes pages_to_scan, which the kernel refuses then', () => {
    const results = run([{ unscannedPages: 200_000 }], SHORT, ADVISOR);
    const knobs = results[0]?.decision.knobs ?? {};
    expect(knobs).not.toHaveProperty('pages_to_scan');
    expect(knobs).toMatchObject({ run: 1, advisor_mode: 'scan-time', advisor_target_scan_time: DEFAULT_AUTOTUNE_SETTINGS.boostScanSeconds, advisor_max_cpu: 20 });
    expect(Number(knobs.advisor_max_pages_to_scan)).toBeGreaterThanOrEqual(Number(knobs.advisor_min_pages_to_scan));
    expect(results[0]?.decision.reseedAdvisor).toBe(true);
  });

  it('holds budgets under the advisor\'s own 10 % floor with advisor_max_pages_to_scan', () => {
    const low = run([{ unscannedPages: 200_000 }], { ...SHORT, maxCpuPercent: 2 }, ADVISOR)[0]?.decision.knobs ?? {};
    const high = run([{ unscannedPages: 200_000 }], { ...SHORT, maxCpuPercent: 40 }, ADVISOR)[0]?.decision.knobs ?? {};
    expect(low.advisor_max_cpu).toBe(2);
    expect(Number(low.advisor_max_pages_to_scan)).toBeLessThan(Number(high.advisor_max_pages_to_scan));
  });

  it('restarts the advisor when it lags the wanted pace (it only adapts after a whole, slow, scan)', () => {
    const results = run([{ unscannedPages: 200_000 }, { unscannedPages: 150_000, pagesToScan: 20 }], SHORT, ADVISOR);
    expect(results[1]?.decision.reseedAdvisor).toBe(true);
    expect(results[1]?.decision.changed).toBe(true);
    expect(results[1]?.decision.reason).toMatch(/advisor's 20 pages per batch lag/);
    const keeping = run([{ unscannedPages: 200_000 }, { unscannedPages: 150_000 }], SHORT, ADVISOR);
    expect(keeping[1]?.decision.reseedAdvisor).toBe(false);
  });

  it('relaxing lengthens the advisor\'s target scan time', () => {
    const [first] = run([{ fullScans: 11 }], SHORT, ADVISOR);
    expect(first?.decision.action).toBe('relax');
    expect(first?.decision.knobs.advisor_target_scan_time).toBe(DEFAULT_AUTOTUNE_SETTINGS.relaxScanSeconds);
    expect(first?.decision.reseedAdvisor).toBe(false);
  });
});
