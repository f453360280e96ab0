// The helper builds without warnings for x86_64 (glibc and musl) and for aarch64,
// where it is built but not run: there is no aarch64 machine to test on.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { requireOrSkip } from '../helpers/e2e.js';
import { requireTool } from '../helpers/tools.js';

const root = join(__dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'ksm-attach-build-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const SOURCES = ['native/attach/ksm_attach.c', 'native/attach/inject.c', 'native/common/maps_scan.c'].map((file) => join(root, file));

/** ELF e_machine: 62 x86_64, 183 aarch64. */
function elfMachine(file: string): number {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  readSync(fd, header, 0, 20, 0);
  closeSync(fd);
  return header.readUInt16LE(18);
}

describe.each([
  ['cc', 62, 'build-essential'],
  ['musl-gcc', 62, 'musl-tools'],
  ['aarch64-linux-gnu-gcc', 183, 'gcc-aarch64-linux-gnu and libc6-dev-arm64-cross'],
] as const)('ksm-attach built with %s', (compiler, machine, packages) => {
  it('compiles with -Wall -Wextra -Werror for the right machine', (ctx) => {
    if (process.platform !== 'linux' || process.arch !== 'x64') return requireOrSkip(ctx, 'the cross-build check runs on x86_64 Linux');
    requireTool(ctx, compiler, packages);
    const binary = join(out, `ksm-attach-${compiler}`);
    const run = spawnSync(compiler, ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', `-I${join(root, 'native', 'common')}`, '-o', binary, ...SOURCES], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(elfMachine(binary)).toBe(machine);
  });
});
