import { installPreloadLibrary } from '../../deploy/install-lib.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { parseCommandArgs, validateInput } from '../usage.js';

export const installLibCommand: Command = {
  name: 'install-lib',
  summary: 'copy libksm_preload.so to a system folder (/usr/lib64 or /usr/lib) that init scripts can name',
  help: `Usage: ksm install-lib [--prefix DIR] [--json]

Copies the built libksm_preload.so into DIR (default /usr/lib64 where it exists,
else /usr/lib) and prints the installed path. It never edits /etc/ld.so.preload:
merging stays opt-in per program.

Options:
  --prefix DIR  the folder to copy into (absolute)
  --json        print {"path": ...}
  -h, --help    this text

Examples:
  sudo ksm install-lib
  sudo ksm install-lib --prefix /opt/ksm
  ksm snippet sysv --lib "$(sudo ksm install-lib)"
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, { prefix: { type: 'string' }, json: { type: 'boolean' } });
    const path = validateInput(() => installPreloadLibrary(values.prefix));
    context.stdout.write(values.json ? formatJson({ path }, false) : `${path}\n`);
    return 0;
  },
};
