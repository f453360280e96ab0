// The C library this Node runs on, named as prebuildify's --tag-libc names it: a
// glibc build must never be loaded on musl (Alpine), nor the other way round.
'use strict';

let cached;

/** 'glibc' or 'musl' on Linux; undefined elsewhere. */
function runtimeLibc() {
  if (process.platform !== 'linux') return undefined;
  // The dynamic loader mapped into this very process says which C library runs it;
  // cheaper than Node's report, and it cannot be fooled by files lying around.
  cached ??= /\/ld-musl-[^/\n]*\.so/.test(require('node:fs').readFileSync('/proc/self/maps', 'latin1')) ? 'musl' : 'glibc';
  return cached;
}

/** prebuilds/PLATFORM-ARCH/LIBC/: where the preload library, the launcher and the injector of a prebuild live. */
function prebuildFolder(root) {
  return require('node:path').join(root, 'prebuilds', `${process.platform}-${process.arch}`, runtimeLibc() ?? 'none');
}

module.exports = { runtimeLibc, prebuildFolder };
