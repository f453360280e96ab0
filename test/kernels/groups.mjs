// The tests `npm run test:kernels` runs on every kernel, as the rows of its table.
// A group is a list of file globs under test/ (matched against paths relative to the
// repository; `**/` matches any folders), so a file that moves keeps its group, and a
// new file joins by its name: any test file named *.kernel.test.ts, or under
// test/kernel/, is picked up as "kernel features" without editing this list.
// A glob that matches no file is a failure of the matrix, not a silent gap.
export const GROUPS = [
  { name: 'coverage: madvise and auto, node, python, C', files: ['test/**/coverage.test.ts', 'test/kernels/figures.kernels.ts'], tests: /coverage/ },
  { name: 'merging with ksmd (madvise; prctl where present)', files: ['test/**/merging.test.ts'] },
  { name: 'ksm run / ksm-exec in each mode', files: ['test/**/run.test.ts', 'test/**/launcher.test.ts'] },
  { name: 'doctor --json', files: ['test/**/doctor.test.ts'] },
  { name: 'status --json and top', files: ['test/**/status.test.ts', 'test/**/top.test.ts'] },
  { name: 'tune with rollback', files: ['test/**/tune.test.ts'] },
  { name: "analyze vs the kernel's merged result", files: ['test/**/analyze.test.ts', 'test/**/analyze-command.test.ts'] },
  { name: 'demo --json >= 95 % of ideal', files: ['test/**/demo.test.ts', 'test/kernels/figures.kernels.ts'], tests: /demo/ },
  {
    name: 'Node API: mark, alloc, process merging',
    files: ['test/**/mark.test.ts', 'test/**/alloc.test.ts', 'test/**/process-merging.test.ts', 'test/**/process-stats.test.ts'],
  },
  {
    name: 'kernel features, exec survival',
    files: ['test/kernel/**/*.test.ts', 'test/**/*.kernel.test.ts', 'test/**/features.test.ts', 'test/**/exec-survival*.test.ts', 'test/**/support.test.ts'],
  },
];
