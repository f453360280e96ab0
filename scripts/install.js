#!/usr/bin/env node
// npm's install step: take a matching prebuild, or compile the addon, the preload
// library and the launcher with node-gyp. A failed build never fails `npm install`:
// the reason is kept in build/ksm-build-status.json for ksmSupport() and `ksm doctor`.
'use strict';

const { spawnSync } = require('node:child_process');
const { existsSync, mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { prebuildFolder } = require('./libc.js');

const root = join(__dirname, '..');
const statusFile = join(root, 'build', 'ksm-build-status.json');

function recordStatus(status) {
  mkdirSync(join(root, 'build'), { recursive: true });
  writeFileSync(statusFile, `${JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2)}\n`);
}

function prebuildDir() {
  // Keyed by C library too: an Alpine install must never take a glibc build.
  const dir = prebuildFolder(root);
  const complete = ['libksm_preload.so', 'ksm-exec', 'ksm-attach'].every((file) => existsSync(join(dir, file)));
  return complete ? dir : undefined;
}

function nodeGypCommand() {
  // npm points install scripts at its bundled node-gyp; a local devDependency comes next.
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  const script = candidates.find((file) => file && existsSync(file));
  return script ? [process.execPath, [script]] : ['node-gyp', []];
}

function main() {
  if (process.platform !== 'linux') {
    recordStatus({ ok: false, reason: `KSM is Linux-only; nothing to build on ${process.platform}` });
    return 0;
  }
  if (prebuildDir()) {
    recordStatus({ ok: true, source: 'prebuild' });
    return 0;
  }
  const [command, prefix] = nodeGypCommand();
  const result = spawnSync(command, [...prefix, 'rebuild'], { cwd: root, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  if (result.status === 0) {
    recordStatus({ ok: true, source: 'node-gyp' });
    return 0;
  }
  process.stderr.write(result.stderr ?? '');
  const lastError = (result.stderr ?? '')
    .split('\n')
    .filter((line) => /error|not found|No such file/i.test(line))
    .slice(-1)[0];
  const reason = result.error
    ? `could not run node-gyp: ${result.error.message}`
    : `node-gyp exited with ${result.status}${lastError ? `: ${lastError.trim()}` : ''}`;
  recordStatus({ ok: false, reason });
  process.stderr.write(
    `ksm-preload: the native build failed (${reason}).\n` +
      'ksm-preload: the package still works, but reports supported: false. Install a C/C++ toolchain and run `npm rebuild ksm-preload`.\n',
  );
  return 0;
}

process.exitCode = main();
