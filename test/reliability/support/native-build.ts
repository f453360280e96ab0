import { join } from 'node:path';
import { buildCached, repoRoot, type BuildSpec } from '../../helpers/native-build.js';

export { buildCached, buildPreloadLibrary, repoRoot } from '../../helpers/native-build.js';
export const fixtureDir = join(repoRoot, 'test/fixtures/reliability/c');

/** A fixture program from test/fixtures/reliability/c, built with gcc -O2 unless told otherwise. */
export function fixture(name: string, options: Partial<BuildSpec> = {}): string {
  return buildCached(name, {
    compiler: options.compiler ?? 'gcc',
    sources: options.sources ?? [join(fixtureDir, `${name}.c`)],
    flags: options.flags ?? ['-O2', '-g', '-Wall', '-Wextra', '-pthread'],
    libs: options.libs ?? ['-ldl'],
    kind: options.kind ?? 'executable',
    includes: [fixtureDir],
  });
}
