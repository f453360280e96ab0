// Turns one column's vitest JSON report into pass/fail per test group.
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

/**
 * Tests refuse to run, under KSM_REQUIRE_E2E=1, where the kernel lacks what they test.
 * Such a refusal is "n/a" when the matrix's own probe (test/kernels/features-probe.c)
 * confirms the kernel lacks it; on a kernel that has it, it stays a failure.
 */
const KERNEL_GAPS = [{ refusal: /KSM_REQUIRE_E2E=1 but this test cannot run: .*PR_SET_MEMORY_MERGE/, feature: 'prctl' }];

function notApplicable(message, features) {
  return KERNEL_GAPS.some((gap) => gap.refusal.test(message) && features?.[gap.feature] === false);
}

/**
 * Per group: { passed, failed, skipped, notApplicable, failures: [{ test, message }] }. A test file that
 * never reported (it did not load, or the run died) fails its groups, as does a group
 * with no test at all on this column.
 */
export function groupResults(groups, reportPath, repoRoot, features) {
  const report = existsSync(reportPath) ? JSON.parse(readFileSync(reportPath, 'utf8')) : undefined;
  const byFile = new Map((report?.testResults ?? []).map((file) => [relative(repoRoot, file.name), file]));
  return groups.map((group) => {
    const result = { name: group.name, passed: 0, failed: 0, skipped: 0, notApplicable: 0, failures: [] };
    for (const file of group.files) {
      const fileResult = byFile.get(file);
      if (!fileResult) {
        result.failed++;
        result.failures.push({ test: file, message: report ? 'the file did not report' : 'no test report: the run did not finish' });
        continue;
      }
      const tests = fileResult.assertionResults.filter((test) => !group.tests || group.tests.test(test.fullName));
      // A failing hook or import fails the file without failing one of its tests.
      if (fileResult.status === 'failed' && !fileResult.assertionResults.some((test) => test.status === 'failed')) {
        result.failed++;
        result.failures.push({ test: file, message: fileResult.message || 'the file failed outside its tests' });
      }
      for (const test of tests) {
        if (test.status === 'passed') result.passed++;
        else if (test.status === 'failed' && notApplicable(test.failureMessages.join('\n'), features)) result.notApplicable++;
        else if (test.status === 'failed') {
          result.failed++;
          result.failures.push({ test: `${file} > ${test.fullName}`, message: test.failureMessages.join('\n') });
        } else result.skipped++;
      }
    }
    if (result.passed + result.failed + result.notApplicable === 0) {
      result.failed++;
      result.failures.push({ test: group.files.join(', ') || '(no file)', message: 'no test of this group ran here' });
    }
    return result;
  });
}
