// The matrix's own measurements, run on every kernel of `npm run test:kernels` (not part
// of `npm test`: the name does not end in .test.ts). It records what the kernel offers
// (by probing), the coverage `ksm run` reaches in each mode and the share of the ideal
// `ksm demo` merges, checks them against their goals, and writes them as JSON to
// $KSM_KERNELS_FIGURES for the kernels table in docs/kernels.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { withKsmd } from '../helpers/ksmd.js';
import { buildWorkload, coverageReaching, python3, repoRoot, startWorkload, workloadsDir } from '../preload/native-build.js';

const KSM = '/sys/kernel/mm/ksm';
const BIN = join(repoRoot, 'bin', 'ksm.js');
/** Under TCG a guest runs programs at about a third of the host's speed. */
const SLOW = { timeout: 600_000 };

interface Probed {
  prctl: boolean;
  execSurvival: boolean;
  procmapQuery: boolean;
}

function probeFeatures(): Probed {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-kernels-probe-'));
  try {
    const probe = join(dir, 'features-probe');
    execFileSync('gcc', ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', probe, join(__dirname, 'features-probe.c')]);
    return JSON.parse(execFileSync(probe, { encoding: 'utf8' })) as Probed;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ksmStatFields(): string[] {
  try {
    return readFileSync('/proc/self/ksm_stat', 'utf8')
      .split('\n')
      .map((line) => /^(\w+)/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined);
  } catch {
    return [];
  }
}

const probed = probeFeatures();
const figures = {
  kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  date: new Date().toISOString(),
  features: {
    ...probed,
    ksmStat: existsSync('/proc/self/ksm_stat'),
    ksmStatFields: ksmStatFields(),
    generalProfit: existsSync(join(KSM, 'general_profit')),
    ksmZeroPages: existsSync(join(KSM, 'ksm_zero_pages')),
    smartScan: existsSync(join(KSM, 'smart_scan')),
    advisor: existsSync(join(KSM, 'advisor_mode')),
  },
  coverage: {} as Record<string, Record<string, number>>,
  demo: {} as Record<string, { fractionOfIdeal: number; savedBytes: number; idealBytes: number; secondsTo90: number | null; seconds: number }>,
};

afterAll(() => {
  const out = process.env.KSM_KERNELS_FIGURES;
  if (!out) return;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(figures, null, 2)}\n`);
});

const workloads = {
  node: () => [process.execPath, join(workloadsDir, 'workload.js')],
  python: () => [python3, join(workloadsDir, 'workload.py')],
  C: () => [buildWorkload()],
};
// prctl mode only where the kernel has the call: elsewhere `ksm run` refuses it by design.
const modes = probed.prctl ? ['madvise', 'auto', 'prctl'] : ['madvise', 'auto'];

describe.each(Object.keys(workloads) as (keyof typeof workloads)[])('ksm run coverage of a %s workload', (workload) => {
  it.for(modes)('--mode %s advises at least 95 % of anonymous memory (smaps mg)', SLOW, async (mode, ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    const running = await startWorkload(process.execPath, [BIN, 'run', '--mode', mode, '--', ...workloads[workload]()], { ...process.env });
    try {
      const { ratio } = await coverageReaching(running.child.pid!, 0.95);
      (figures.coverage[workload] ??= {})[mode] = ratio;
      expect(ratio).toBeGreaterThanOrEqual(0.95);
    } finally {
      expect(await running.finish()).toBe(0);
    }
  });
});

describe('ksm demo --json', () => {
  it.for(modes)('--mode %s merges at least 95 % of its ideal', SLOW, async (mode, ctx) => {
    requireOrSkip(ctx, ksmUnavailable());
    await withKsmd(async () => {
      // As a first-time user meets it: ksmd stopped, the demo starts and tunes it.
      writeFileSync(join(KSM, 'run'), '0');
      const demo = spawnSync(process.execPath, [BIN, 'demo', '--json', '--mode', mode, '--workers', '3', '--size', '8', '--timeout', '120'], { encoding: 'utf8' });
      expect(demo.status, demo.stderr).toBe(0);
      const result = JSON.parse(demo.stdout) as { fractionOfIdeal: number; savedBytes: number; idealBytes: number; secondsTo90?: number; seconds: number };
      figures.demo[mode] = {
        fractionOfIdeal: result.fractionOfIdeal,
        savedBytes: result.savedBytes,
        idealBytes: result.idealBytes,
        secondsTo90: result.secondsTo90 ?? null,
        seconds: result.seconds,
      };
      expect(result.fractionOfIdeal).toBeGreaterThanOrEqual(0.95);
    });
  });
});
