import { execFileSync } from 'node:child_process';
import { KsmError } from '../core/errors.js';
import { ENV_MODE, MODES, PRELOAD_PATH_PUNCTUATION } from '../core/facts.js';
import { preloadLibrary } from '../core/paths.js';
import { bootLines } from '../kernel/persist.js';
import {
  escapeDockerfile,
  quoteDockerfile,
  quoteJavaScript,
  quoteKubernetes,
  quoteShell,
  quoteSupervisord,
  quoteSystemd,
  quoteYaml,
} from './quote.js';
import { kernelFeatures } from '../kernel/features.js';
import { validateKnobs, type KnobChanges } from '../kernel/tune.js';

/** Where a snippet goes. */
export const SNIPPET_FORMATS = [
  'sysv',
  'systemd',
  'openrc',
  'docker',
  'docker-run',
  'compose',
  'k8s',
  'supervisord',
  'pm2',
  'ksmd-boot',
] as const;

export type SnippetFormat = (typeof SNIPPET_FORMATS)[number];

/** KSM_PRELOAD_MODE of the library: `auto` (the default) uses prctl where the kernel has it, else madvise. */
export type PreloadMode = 'auto' | 'prctl' | 'madvise';

/** The library's modes a snippet can ask for (`off` would load it for nothing). */
const SNIPPET_MODES = MODES.filter((mode): mode is PreloadMode => mode !== 'off');

/** Options of initSnippet(). */
export interface SnippetOptions {
  format: SnippetFormat;
  /** The library as the target system sees it; default: this package's built libksm_preload.so. */
  libPath?: string;
  /** KSM_PRELOAD_MODE to set; `auto` (default) sets nothing. */
  mode?: PreloadMode;
  /**
   * systemd only: `memory-ksm` writes MemoryKSM=yes, `preload` the LD_PRELOAD form.
   * `auto` (default) picks MemoryKSM=yes when this host's systemd is 256+ (254 and 255
   * pass stray arguments to prctl, and every such service fails with EINVAL) and a probe
   * shows its kernel keeps the flag across exec (kernelFeatures().execSurvival; 6.4-6.6
   * drop it), unless mode is `madvise`.
   */
  systemd?: 'auto' | 'memory-ksm' | 'preload';
  /** ksmd-boot only: the knobs to set at boot (default `{ run: 1 }`). */
  knobs?: KnobChanges;
}

/** What LD_PRELOAD can carry: the loader splits it at spaces and colons and expands `$`. */
const PRELOAD_SAFE_PATH = new RegExp(`^/[A-Za-z0-9${PRELOAD_PATH_PUNCTUATION.replace(/[\\^\]-]/g, '\\$&')}]+$`);

/**
 * Refuses a library path LD_PRELOAD cannot carry (relative, space, colon, `$`,
 * control or non-ASCII characters) with a RangeError.
 */
export function validatePreloadPath(libPath: string): string {
  if (typeof libPath !== 'string') throw new TypeError(`the library path must be a string, got ${typeof libPath}`);
  if (PRELOAD_SAFE_PATH.test(libPath)) return libPath;
  const problem = !libPath.startsWith('/')
    ? 'it is not absolute (the loader resolves LD_PRELOAD entries against no folder)'
    : /[ :]/.test(libPath)
      ? 'it contains a space or colon, where the loader splits LD_PRELOAD'
      : libPath.includes('$')
        ? 'it contains `$`, which the loader expands ($ORIGIN, $LIB, $PLATFORM)'
        : 'it contains characters outside A-Z a-z 0-9 . _ + / - (quotes, control or non-ASCII characters)';
  throw new RangeError(`library path ${JSON.stringify(libPath)} cannot go into LD_PRELOAD: ${problem}; install it somewhere plain with \`ksm install-lib\``);
}

/**
 * The text that starts programs with KSM merging for one init system or container
 * format. Every form puts the library first in LD_PRELOAD, ahead of what the program
 * already preloads: an allocator listed before it would take malloc, and the library's
 * hooks would never run. Where the format cannot reference the old value the snippet says so. Throws RangeError for a library
 * path LD_PRELOAD cannot carry, TypeError/RangeError for other bad options.
 */
export function initSnippet(options: SnippetOptions): string {
  const { format, mode = 'auto' } = options;
  if (!(SNIPPET_FORMATS as readonly string[]).includes(format)) {
    throw new RangeError(`unknown snippet format ${JSON.stringify(format)}; use one of ${SNIPPET_FORMATS.join(', ')}`);
  }
  if (!SNIPPET_MODES.includes(mode)) throw new RangeError(`mode must be one of ${SNIPPET_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  if (format === 'ksmd-boot') return ksmdBootSnippet(options.knobs ?? { run: 1 });
  if (format === 'systemd' && systemdForm(options) === 'memory-ksm') return systemdMemoryKsmSnippet();
  const lib = validatePreloadPath(options.libPath ?? builtLibrary());
  const env: Array<[string, string]> = mode === 'auto' ? [] : [[ENV_MODE, mode]];
  return WRITERS[format](lib, env);
}

function builtLibrary(): string {
  const built = preloadLibrary();
  if (built.path === undefined) throw new KsmError('initSnippet', 'ENOENT', `${built.reason}; or pass the library's path (--lib)`);
  return built.path;
}

type Writer = (lib: string, env: ReadonlyArray<[string, string]>) => string;

const WRITERS: Record<Exclude<SnippetFormat, 'ksmd-boot'>, Writer> = {
  sysv: (lib, env) => `# Near the top of /etc/init.d/SERVICE, before the daemon starts:\n${shellExports(lib, env)}`,
  openrc: (lib, env) => `# In /etc/conf.d/SERVICE (OpenRC sources it before starting the service):\n${shellExports(lib, env)}`,
  systemd: (lib, env) =>
    [
      '# /etc/systemd/system/SERVICE.service.d/ksm.conf, then: systemctl daemon-reload; systemctl restart SERVICE',
      '# systemd cannot append to a variable: this LD_PRELOAD replaces one the unit sets itself.',
      `# If the unit already preloads a library, list it after this one: LD_PRELOAD=${lib}:/its/lib.so`,
      '[Service]',
      ...[['LD_PRELOAD', lib] as const, ...env].map(([name, value]) => `Environment=${quoteSystemd(`${name}=${value}`)}`),
      '',
    ].join('\n'),
  docker: (lib, env) =>
    [
      `# Dockerfile: copy the library in first (\`ksm where\` prints its path on the build host), e.g. COPY libksm_preload.so ${lib}`,
      '# ${LD_PRELOAD:+...} keeps what the base image preloads, after this library.',
      `ENV LD_PRELOAD="${escapeDockerfile(lib)}\${LD_PRELOAD:+:\${LD_PRELOAD}}"`,
      ...env.map(([name, value]) => `ENV ${name}=${quoteDockerfile(value)}`),
      '',
    ].join('\n'),
  'docker-run': (lib, env) =>
    [
      `# -e replaces an LD_PRELOAD the image sets; if it has one, list it after this one: -e LD_PRELOAD=${lib}:/its/lib.so`,
      'docker run \\',
      `  --mount ${quoteShell(`type=bind,source=${lib},target=${lib},readonly`)} \\`,
      ...[['LD_PRELOAD', lib] as const, ...env].map(([name, value]) => `  -e ${quoteShell(`${name}=${value}`)} \\`),
      '  IMAGE',
      '',
    ].join('\n'),
  compose: (lib, env) =>
    [
      '# docker-compose.yml: environment: replaces an LD_PRELOAD the image sets; if it has one, list it after this one.',
      'services:',
      '  app:',
      '    volumes:',
      '      - type: bind',
      `        source: ${quoteYaml(lib, { interpolates: true })}`,
      `        target: ${quoteYaml(lib, { interpolates: true })}`,
      '        read_only: true',
      '    environment:',
      ...[['LD_PRELOAD', lib] as const, ...env].map(([name, value]) => `      ${name}: ${quoteYaml(value, { interpolates: true })}`),
      '',
    ].join('\n'),
  k8s: (lib, env) =>
    [
      '# Container spec: env replaces an LD_PRELOAD the image sets ($(VAR) sees only variables of this list);',
      '# if the image preloads a library, list it after this one. Mount the library at the same path (hostPath volume).',
      'env:',
      ...[['LD_PRELOAD', lib] as const, ...env].flatMap(([name, value]) => [`  - name: ${name}`, `    value: ${quoteKubernetes(value)}`]),
      '',
    ].join('\n'),
  supervisord: (lib, env) =>
    [
      '; In the [program:NAME] section. supervisord cannot append to a variable it may not have:',
      `; if the program already preloads a library, list it after this one: LD_PRELOAD="${lib}:/its/lib.so"`,
      `environment=${[['LD_PRELOAD', lib] as const, ...env].map(([name, value]) => `${name}=${quoteSupervisord(value)}`).join(',')}`,
      '',
    ].join('\n'),
  pm2: (lib, env) =>
    [
      '// ecosystem.config.js: the app inherits LD_PRELOAD from the shell that runs pm2; the library goes ahead of it.',
      'module.exports = {',
      '  apps: [{',
      "    name: 'app',",
      "    script: 'server.js',",
      '    env: {',
      `      LD_PRELOAD: [${quoteJavaScript(lib)}, process.env.LD_PRELOAD].filter(Boolean).join(':'),`,
      ...env.map(([name, value]) => `      ${name}: ${quoteJavaScript(value)},`),
      '    },',
      '  }],',
      '};',
      '',
    ].join('\n'),
};

/** POSIX sh: puts the library ahead of what LD_PRELOAD holds, then exports. */
function shellExports(lib: string, env: ReadonlyArray<[string, string]>): string {
  return [
    `LD_PRELOAD=${quoteShell(lib)}"\${LD_PRELOAD:+:\$LD_PRELOAD}"`,
    ...env.map(([name, value]) => `${name}=${quoteShell(value)}`),
    `export LD_PRELOAD${env.map(([name]) => ` ${name}`).join('')}`,
    '',
  ].join('\n');
}

function systemdMemoryKsmSnippet(): string {
  return [
    '# /etc/systemd/system/SERVICE.service.d/ksm.conf, then: systemctl daemon-reload; systemctl restart SERVICE',
    '# systemd 256+ sets prctl(PR_SET_MEMORY_MERGE) before exec; no library needed. ksmd must run (ksm enable).',
    '# Only where the kernel keeps that flag across execve (6.4-6.6 drop it: `ksm doctor` says which): else use --systemd preload.',
    '[Service]',
    'MemoryKSM=yes',
    '',
  ].join('\n');
}

function ksmdBootSnippet(knobs: KnobChanges): string {
  const valid = validateKnobs(knobs);
  return [
    '# systemd hosts: /etc/tmpfiles.d/ksm-preload.conf',
    ...bootLines(valid, 'tmpfiles'),
    '',
    '# other hosts: in /etc/rc.local, before `exit 0`',
    ...bootLines(valid, 'rc.local'),
    '',
  ].join('\n');
}

function systemdForm(options: SnippetOptions): 'memory-ksm' | 'preload' {
  const form = options.systemd ?? 'auto';
  if (form !== 'auto' && form !== 'memory-ksm' && form !== 'preload') {
    throw new RangeError(`systemd form must be auto, memory-ksm or preload, got ${JSON.stringify(form)}`);
  }
  if (form !== 'auto') return form;
  return options.mode !== 'madvise' && hostSystemdVersion() >= 256 && kernelFeatures().execSurvival.available ? 'memory-ksm' : 'preload';
}

/** The major version `systemctl --version` reports, 0 without systemd. */
export function hostSystemdVersion(): number {
  try {
    const output = execFileSync('systemctl', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return Number(/^systemd (\d+)/.exec(output)?.[1] ?? 0);
  } catch {
    return 0;
  }
}
