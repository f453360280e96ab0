import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(__dirname, '../../..');
export const fixtureDir = join(repoRoot, 'test/fixtures/reliability/c');

/**
 * The preload library's sources, as binding.gyp lists them for the real build,
 * for the builds the suite makes itself (other compilers, sanitizers, musl).
 */
export function preloadSources(): string[] {
  type GypTarget = { target_name: string; conditions?: Array<[string, { sources?: string[] }]> };
  const gyp = JSON.parse(readFileSync(join(repoRoot, 'binding.gyp'), 'utf8')) as { targets: GypTarget[] };
  const target = gyp.targets.find((t) => t.target_name === 'ksm_preload');
  const sources = target?.conditions?.flatMap(([, settings]) => settings.sources ?? []) ?? [];
  if (sources.length === 0) throw new Error('binding.gyp lists no sources for the ksm_preload target');
  return sources.map((source) => join(repoRoot, source));
}

export interface BuildSpec {
  compiler: string;
  sources: string[];
  flags?: string[];
  /** Libraries and linker flags, placed after the sources. */
  libs?: string[];
  kind?: 'executable' | 'shared';
}

const cacheDir = join(tmpdir(), 'ksm-reliability-build');

/**
 * Compiles once per distinct input: the output's name is a hash of the compiler,
 * the flags and every source's content, so test files share artifacts within a
 * run and a changed source is always rebuilt.
 */
export function buildCached(name: string, spec: BuildSpec): string {
  const flags = spec.flags ?? [];
  const libs = spec.libs ?? [];
  const kindFlags = spec.kind === 'shared' ? ['-shared', '-fPIC'] : [];
  const hash = createHash('sha256');
  hash.update(JSON.stringify([spec.compiler, flags, libs, kindFlags]));
  for (const source of spec.sources) hash.update(source).update(readFileSync(source));
  hash.update(readFileSync(join(fixtureDir, 'hold.h')));
  const commonHeaders = join(repoRoot, 'native/common');
  for (const dir of [commonHeaders, join(repoRoot, 'native/preload')]) {
    for (const header of readdirSync(dir).filter((file) => file.endsWith('.h'))) hash.update(readFileSync(join(dir, header)));
  }
  const output = join(cacheDir, `${name}-${hash.digest('hex').slice(0, 16)}${spec.kind === 'shared' ? '.so' : ''}`);
  if (existsSync(output)) return output;
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${output}.${process.pid}.tmp`;
  execFileSync(
    spec.compiler,
    [...kindFlags, ...flags, `-I${fixtureDir}`, `-I${commonHeaders}`, `-I${join(repoRoot, 'native/preload')}`, '-o', partial, ...spec.sources, ...libs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  renameSync(partial, output);
  return output;
}

/** A fixture program from test/fixtures/reliability/c, built with gcc -O2 unless told otherwise. */
export function fixture(name: string, options: Partial<BuildSpec> = {}): string {
  return buildCached(name, {
    compiler: options.compiler ?? 'gcc',
    sources: options.sources ?? [join(fixtureDir, `${name}.c`)],
    flags: options.flags ?? ['-O2', '-g', '-Wall', '-Wextra', '-pthread'],
    libs: options.libs ?? ['-ldl'],
    kind: options.kind ?? 'executable',
  });
}

/** Where a command lives on PATH, or undefined. */
export function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', command], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const LIBRARY_FLAGS = ['-std=gnu11', '-Wall', '-Wextra', '-fvisibility=hidden', '-fno-strict-aliasing', '-g'];

/** libksm_preload.so built by the suite itself: another compiler, level, sanitizer or libc. */
export function buildPreloadLibrary(compiler: string, flags: string[], libs: string[] = ['-ldl', '-lpthread']): string {
  return buildCached(`libksm_preload-${compiler}${flags.join('')}`.replace(/[^A-Za-z0-9._-]/g, '_'), {
    compiler,
    sources: preloadSources(),
    flags: [...LIBRARY_FLAGS, ...flags],
    libs: [...libs, '-Wl,-z,now'],
    kind: 'shared',
  });
}
