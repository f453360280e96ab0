// Prints vitest's own totals from its JSON report as one plain line for CI:
// "N passed, N failed, N skipped".
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'build/test-report.json';
try {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  console.log(`${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
} catch (error) {
  console.log(`0 passed, 1 failed, 0 skipped`);
  console.error(`no test report at ${file}: ${error.message}`);
}
