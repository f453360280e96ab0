import { defineConfig, mergeConfig } from 'vitest/config';
import base from '../../vitest.config.mts';

// The suite as `npm run test:kernels` runs it on each kernel: the same tests, plus the
// matrix's own *.kernels.ts files, with the JSON report where the runner asks for it
// (never over build/test-report.json), and timeouts scaled for guests under TCG.
const scale = Number(process.env.KSM_TEST_TIME_SCALE ?? '1');
const config = mergeConfig(base, {
  test: {
    include: ['test/**/*.test.ts', 'test/kernels/**/*.kernels.ts'],
    testTimeout: 60_000 * scale,
    hookTimeout: 60_000 * scale,
  },
});
config.test!.reporters = ['default', ['json', { outputFile: process.env.KSM_KERNELS_REPORT ?? 'build/kernels/report.json' }]];
config.test!.root = new URL('../..', import.meta.url).pathname;
export default config;
