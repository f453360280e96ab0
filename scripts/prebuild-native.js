#!/usr/bin/env node
// Puts the preload library and the launcher beside prebuildify's addon, so an
// install from a package with prebuilds needs no compiler at all.
'use strict';

const { copyFileSync, mkdirSync } = require('node:fs');
const { join, relative } = require('node:path');
const { prebuildFolder } = require('./libc.js');

const root = join(__dirname, '..');
// Beside the addon, which prebuildify --tag-libc names node.napi.glibc.node or .musl.node,
// in a folder of their own per C library: ksm-exec finds the library next to itself.
const target = prebuildFolder(root);
mkdirSync(target, { recursive: true });
for (const file of ['libksm_preload.so', 'ksm-exec', 'ksm-attach']) {
  copyFileSync(join(root, 'build', 'Release', file), join(target, file));
  console.log(relative(root, join(target, file)));
}
