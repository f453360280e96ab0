import { SNIPPET_FORMATS, initSnippet, type PreloadMode, type SnippetFormat, type SnippetOptions } from '../../deploy/snippets.js';
import type { CliContext, Command } from '../command.js';
import { parseCommandArgs, UsageError, validateInput } from '../usage.js';

export const snippetCommand: Command = {
  name: 'snippet',
  summary: 'print the lines that start a service with merging, for an init system or container format',
  help: `Usage: ksm snippet FORMAT [--lib PATH] [--mode auto|prctl|madvise] [--systemd memory-ksm|preload]

Prints a snippet that starts a program with KSM merging on. Every form keeps an
LD_PRELOAD the program already has (where the format cannot reference the old value,
the snippet says how to keep it). Values are quoted for the format; library paths
LD_PRELOAD cannot carry (spaces, colons, $, relative, control or non-ASCII
characters) are refused.

Formats:
  sysv         lines for an /etc/init.d script
  systemd      a drop-in: MemoryKSM=yes on systemd 256+ where a probe shows the kernel
               keeps the flag across exec, else LD_PRELOAD
  openrc       lines for /etc/conf.d/SERVICE
  docker       Dockerfile ENV lines
  docker-run   docker run flags
  compose      docker-compose.yml service fragment
  k8s          container env YAML
  supervisord  environment= line of a [program:x] section
  pm2          ecosystem.config.js
  ksmd-boot    start ksmd at boot (systemd-tmpfiles entry, or rc.local lines)

Options:
  --lib PATH         library path on the target (default: this package's build;
                     see \`ksm install-lib\`)
  --mode MODE        KSM_PRELOAD_MODE for the library (default auto: prctl where the
                     kernel has it, else madvise)
  --systemd FORM     systemd only: memory-ksm or preload, instead of deciding by host
  -h, --help         this text

Examples:
  ksm snippet sysv --lib /usr/lib64/libksm_preload.so
  ksm snippet systemd --systemd preload --mode madvise
  ksm snippet k8s --lib /opt/ksm/libksm_preload.so
  ksm snippet ksmd-boot | sudo tee /etc/tmpfiles.d/ksm-preload.conf
`,
  async run(args: string[], context: CliContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(
      args,
      { lib: { type: 'string' }, mode: { type: 'string' }, systemd: { type: 'string' } },
      true,
    );
    const [format, extra] = positionals;
    if (format === undefined) throw new UsageError(`which format? one of ${SNIPPET_FORMATS.join(', ')}`);
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    const options: SnippetOptions = {
      format: format as SnippetFormat,
      libPath: values.lib,
      mode: values.mode as PreloadMode | undefined,
      systemd: values.systemd as SnippetOptions['systemd'],
    };
    context.stdout.write(validateInput(() => initSnippet(options)));
    return 0;
  },
};
