import { defineConfig } from 'vitest/config';

// Files run one at a time: many tests start real processes, and the end-to-end
// ones share the host's single ksmd and its /sys/kernel/mm/ksm knobs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', ['json', { outputFile: 'build/test-report.json' }]],
  },
});
