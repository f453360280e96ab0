// Removes from dist/cjs what no file of lib/ compiles to any more (a module that moved
// or was deleted), so the build never ships stale modules. tsc rewrites the rest in
// place, which keeps dist/ usable by tests that run while a build happens.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'cjs');
const OUTPUT = /\.(js|js\.map|d\.ts)$/;

function prune(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const source = join(root, 'lib', relative(out, path));
    if (entry.isDirectory()) {
      if (existsSync(source)) prune(path);
      else rmSync(path, { recursive: true, force: true });
    } else if (OUTPUT.test(entry.name) && !existsSync(source.replace(OUTPUT, '.ts'))) {
      rmSync(path, { force: true });
    }
  }
}

if (existsSync(out)) prune(out);
