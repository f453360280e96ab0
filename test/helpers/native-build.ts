import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

// The one way the tests compile native code of their own: the preload library (with
// another compiler, optimisation level, sanitizer or libc), the launcher, and C
// fixtures. Never build/Release, so tests never race a concurrent node-gyp rebuild.

export const repoRoot = resolve(__dirname, '../..');
const commonHeaders = join(repoRoot, 'native/common');
const preloadDir = join(repoRoot, 'native/preload');
const cacheDir = join(tmpdir(), 'ksm-preload-test-build');

export interface BuildSpec {
  compiler: string;
  sources: string[];
  flags?: string[];
  /** Libraries and linker flags, placed after the sources. */
  libs?: string[];
  kind?: 'executable' | 'shared';
  /** Folders searched for headers, besides native/common and native/preload. */
  includes?: string[];
  /** The output's exact file name (a program whose name is its comm), in a folder of its own. */
  fileName?: string;
}

/**
 * Compiles once per distinct input: the output's name is a hash of the compiler, the
 * flags and every source's and native header's content, so test files share artifacts
 * within and across runs, and a changed source is always rebuilt.
 */
export function buildCached(name: string, spec: BuildSpec): string {
  const flags = spec.flags ?? [];
  const libs = spec.libs ?? [];
  const includes = [...(spec.includes ?? []), commonHeaders, preloadDir];
  const kindFlags = spec.kind === 'shared' ? ['-shared', '-fPIC'] : [];
  const hash = createHash('sha256');
  hash.update(JSON.stringify([spec.compiler, flags, libs, kindFlags, includes]));
  for (const source of spec.sources) hash.update(source).update(readFileSync(source));
  for (const dir of includes) {
    for (const header of readdirSync(dir).filter((file) => file.endsWith('.h'))) hash.update(header).update(readFileSync(join(dir, header)));
  }
  const hashed = `${name}-${hash.digest('hex').slice(0, 16)}`;
  const output = spec.fileName ? join(cacheDir, `${hashed}.d`, spec.fileName) : join(cacheDir, `${hashed}${spec.kind === 'shared' ? '.so' : ''}`);
  if (existsSync(output)) return output;
  mkdirSync(dirname(output), { recursive: true });
  const partial = `${output}.${process.pid}.tmp`;
  execFileSync(spec.compiler, [...kindFlags, ...flags, ...includes.map((dir) => `-I${dir}`), '-o', partial, ...spec.sources, ...libs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  renameSync(partial, output);
  return output;
}

/** The preload library's sources, as binding.gyp lists them for the real build. */
export function preloadSources(): string[] {
  type GypTarget = { target_name: string; conditions?: Array<[string, { sources?: string[] }]> };
  const gyp = JSON.parse(readFileSync(join(repoRoot, 'binding.gyp'), 'utf8')) as { targets: GypTarget[] };
  const target = gyp.targets.find((t) => t.target_name === 'ksm_preload');
  const sources = target?.conditions?.flatMap(([, settings]) => settings.sources ?? []) ?? [];
  if (sources.length === 0) throw new Error('binding.gyp lists no sources for the ksm_preload target');
  return sources.map((source) => join(repoRoot, source));
}

export interface LibraryBuild {
  compiler?: string;
  /** Optimisation, sanitizers, defines: added to the flags the real build uses. */
  flags?: string[];
  libs?: string[];
  /** More sources linked into the library (a test's replacement for a libc function, say). */
  extraSources?: string[];
}

/** libksm_preload.so built from the sources binding.gyp lists. */
export function buildPreloadLibrary({ compiler = 'gcc', flags = ['-O2'], libs = ['-ldl', '-lpthread'], extraSources = [] }: LibraryBuild = {}): string {
  const name = `libksm_preload-${compiler}${flags.join('')}${extraSources.length > 0 ? '-extra' : ''}`.replace(/[^A-Za-z0-9._-]/g, '_');
  return buildCached(name, {
    compiler,
    sources: [...preloadSources(), ...extraSources],
    flags: ['-std=gnu11', '-Wall', '-Wextra', '-fvisibility=hidden', '-fno-strict-aliasing', '-D_FILE_OFFSET_BITS=64', '-g', ...flags],
    libs: [...libs, '-Wl,-z,now'],
    kind: 'shared',
  });
}

/** ksm-exec, in a folder of its own next to a copy of the library, as node-gyp lays them out. */
export function buildLauncher(library = buildPreloadLibrary()): string {
  const program = buildCached('ksm-exec', {
    compiler: 'gcc',
    sources: [join(repoRoot, 'native/launcher/ksm_exec.c')],
    flags: ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror'],
  });
  const folder = join(cacheDir, `launcher-${createHash('sha256').update(program).update(library).digest('hex').slice(0, 16)}`);
  const launcher = join(folder, 'ksm-exec');
  if (!existsSync(launcher)) {
    mkdirSync(folder, { recursive: true });
    copyFileSync(library, join(folder, 'libksm_preload.so'));
    copyFileSync(program, `${launcher}.${process.pid}.tmp`);
    renameSync(`${launcher}.${process.pid}.tmp`, launcher);
  }
  return launcher;
}
