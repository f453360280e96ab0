import type { CliContext, Command } from '../command.js';
import { parseCommandArgs } from '../usage.js';
import { applyAndReport } from '../knob-changes.js';

const OPTIONS = { persist: { type: 'boolean' }, json: { type: 'boolean' } } as const;

export const enableCommand: Command = {
  name: 'enable',
  summary: 'start ksmd (run=1), optionally at every boot too',
  help: `Usage: ksm enable [--persist] [--json]

Starts ksmd (writes 1 to /sys/kernel/mm/ksm/run). Needs root. ksmd then merges the
memory of processes that opted in: start them with \`ksm run\` or LD_PRELOAD.

Options:
  --persist   also start ksmd at boot (systemd-tmpfiles entry, else /etc/rc.local)
  --json      print the change as JSON
  -h, --help  this text

Examples:
  sudo ksm enable
  sudo ksm enable --persist
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, OPTIONS);
    return applyAndReport({ run: 1 }, values.persist === true, context, values.json === true);
  },
};

export const disableCommand: Command = {
  name: 'disable',
  summary: 'stop ksmd (run=0), or stop and unmerge everything (--unmerge, run=2)',
  help: `Usage: ksm disable [--unmerge] [--persist] [--json]

Stops ksmd (run=0): pages already merged stay merged. With --unmerge (run=2) every
merged page is copied back; that needs free memory for all of them. Needs root.

Options:
  --unmerge   also unmerge every merged page (run=2)
  --persist   keep ksmd stopped at boot too
  --json      print the change as JSON
  -h, --help  this text

Examples:
  sudo ksm disable
  sudo ksm disable --unmerge
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, { ...OPTIONS, unmerge: { type: 'boolean' } });
    const changes = { run: values.unmerge ? 2 : 0 };
    return applyAndReport(changes, values.persist === true, context, values.json === true);
  },
};
