import { preloadLibrary } from '../../core/paths.js';
import type { CliContext, Command } from '../command.js';
import { formatJson } from '../format.js';
import { parseCommandArgs } from '../usage.js';

export const whereCommand: Command = {
  name: 'where',
  summary: 'print the absolute path of libksm_preload.so, for LD_PRELOAD=$(ksm where)',
  help: `Usage: ksm where [--json]

Prints the absolute path of the built libksm_preload.so. Exits with 1 and the
reason when it was not built.

Options:
  --json      print {"path": ...} or {"reason": ...}
  -h, --help  this text

Examples:
  LD_PRELOAD=$(ksm where) redis-server
  export LD_PRELOAD="\${LD_PRELOAD:+$LD_PRELOAD:}$(ksm where)"
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values } = parseCommandArgs(args, { json: { type: 'boolean' } });
    const library = preloadLibrary();
    if (values.json) {
      context.stdout.write(formatJson(library, false));
      return library.path === undefined ? 1 : 0;
    }
    if (library.path === undefined) throw new Error(library.reason);
    context.stdout.write(`${library.path}\n`);
    return 0;
  },
};
