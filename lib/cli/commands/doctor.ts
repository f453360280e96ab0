import { doctorChecks, type DoctorCheck } from '../../diagnosis/doctor.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { parseCommandArgs } from '../usage.js';

function formatCheck(check: DoctorCheck): string {
  const fix = check.fix ? `\n      fix: ${check.fix}` : '';
  return `${check.status.padEnd(4)}  ${check.name}: ${check.detail}${fix}\n`;
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check everything KSM needs here, each line ok/warn/fail with the fix',
  help: `Usage: ksm doctor [--json]

Checks, in order: the kernel has KSM (sysfs, and CONFIG_KSM in /boot/config-$(uname -r)
or /proc/config.gz when readable), ksmd runs, whether this is a container, whether
/sys/kernel/mm/ksm is writable, transparent huge pages, prctl(PR_SET_MEMORY_MERGE)
and whether it survives exec (a probe child sets it and execs), what else the
kernel offers (PROCMAP_QUERY, ksm_merging_pages, the fields of ksm_stat,
general_profit, ksm_zero_pages, smart_scan, the advisor: probed, never judged by
version; --json gives each with its source), the native addon, the preload library
(loads for this system's C library, glibc or musl) and the launcher. Exits with 1
when a check fails.

Options:
  --json      print the checks as JSON
  -h, --help  this text

Example:
  ksm doctor
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, { json: { type: 'boolean' } });
    const checks = doctorChecks();
    context.stdout.write(values.json ? formatJson(checks, context.stdout.isTTY === true) : checks.map(formatCheck).join(''));
    return checks.some((check) => check.status === 'fail') ? 1 : 0;
  },
};
