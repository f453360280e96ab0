#!/usr/bin/env node
// Puts the preload library and the launcher beside prebuildify's addon, so an
// install from a package with prebuilds needs no compiler at all.
'use strict';

const { copyFileSync, mkdirSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(target, { recursive: true });
for (const file of ['libksm_preload.so', 'ksm-exec', 'ksm-attach']) {
  copyFileSync(join(root, 'build', 'Release', file), join(target, file));
  console.log(`prebuilds/${process.platform}-${process.arch}/${file}`);
}
