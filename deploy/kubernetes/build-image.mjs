#!/usr/bin/env node
// Builds the image the DaemonSet runs without any registry: this host's node binary
// and the C libraries it links, plus the built package (dist/, bin/, the native
// build, production node_modules), imported into podman as localhost/ksm-preload:VERSION.
//
//   node deploy/kubernetes/build-image.mjs [--tar FILE] [-- PODMAN_GLOBAL_OPTIONS...]
//
// With --tar it only writes the root filesystem tarball (for `podman import`,
// `docker import` or `ctr images import` elsewhere). Needs `npm run build` first.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const root = realpathSync(new URL('../../', import.meta.url).pathname);
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
export const IMAGE = `localhost/ksm-preload:${version}`;
const APP = '/opt/ksm-preload';

/** The files node needs from the host: itself and what ldd lists, at their paths. */
function nodeFiles() {
  const node = realpathSync(process.execPath);
  const libraries = execFileSync('ldd', [node], { encoding: 'utf8' })
    .split('\n')
    .map((line) => /(\/\S+) \(0x/.exec(line)?.[1])
    .filter(Boolean);
  return { node, libraries };
}

function copyInto(stage, source, target = source) {
  mkdirSync(dirname(join(stage, target)), { recursive: true });
  cpSync(source, join(stage, target), { recursive: true, dereference: true });
}

/** Writes the root filesystem as a tarball and returns its path (in a new temporary folder unless `tarball` is given). */
export function buildRootfs(tarball) {
  if (!existsSync(join(root, 'dist/cjs/cli/main.js'))) throw new Error('run `npm run build` first: dist/ is missing');
  const stage = mkdtempSync(join(tmpdir(), 'ksm-image-'));
  try {
    const { node, libraries } = nodeFiles();
    copyInto(stage, node, '/usr/bin/node');
    for (const library of libraries) copyInto(stage, library);
    for (const path of ['package.json', 'binding.gyp', 'bin', 'dist', 'scripts/libc.js', 'lib/fleet/dashboard']) copyInto(stage, join(root, path), join(APP, path));
    for (const file of ['ksm_addon.node', 'libksm_preload.so', 'ksm-exec', 'ksm-attach']) {
      const built = join(root, 'build/Release', file);
      if (existsSync(built)) copyInto(stage, built, join(APP, 'build/Release', file));
    }
    const modules = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((path) => path.startsWith(join(root, 'node_modules')));
    for (const module of modules) copyInto(stage, module, join(APP, module.slice(root.length)));
    for (const folder of ['tmp', 'run/ksm-preload', 'proc', 'sys', 'dev', 'etc']) mkdirSync(join(stage, folder), { recursive: true });
    const out = tarball ?? join(mkdtempSync(join(tmpdir(), 'ksm-image-tar-')), 'rootfs.tar');
    execFileSync('tar', ['-C', stage, '--numeric-owner', '--owner=0', '--group=0', '-cf', out, '.']);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Imports the tarball into podman (with `podmanArgs` before the subcommand: --root, --runroot, ...). */
export function importImage(tarball, podmanArgs = []) {
  execFileSync('podman', [...podmanArgs, 'import', '--change', 'ENV PATH=/usr/local/bin:/usr/bin:/bin', '--change', `WORKDIR ${APP}`, '--change', 'CMD ["node", "/opt/ksm-preload/bin/ksm.js", "exporter", "--listen", ":9964"]', tarball, IMAGE], { stdio: ['ignore', 'ignore', 'inherit'] });
  return IMAGE;
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(new URL(import.meta.url).pathname)) {
  const args = process.argv.slice(2);
  const separator = args.indexOf('--');
  const podmanArgs = separator < 0 ? [] : args.slice(separator + 1);
  const own = separator < 0 ? args : args.slice(0, separator);
  const tarAt = own.indexOf('--tar');
  if (tarAt >= 0) {
    console.log(buildRootfs(own[tarAt + 1]));
  } else {
    const tarball = buildRootfs();
    try {
      console.log(importImage(tarball, podmanArgs));
    } finally {
      rmSync(dirname(tarball), { recursive: true, force: true });
    }
  }
}
