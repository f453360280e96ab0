import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execInPlace } from '../../lib/marking/exec.js';
import { runNode } from './compiled-lib.js';

describe('execInPlace', () => {
  it('replaces the Node process: same pid, output still flows, env and args arrive', () => {
    const result = runNode(`
      require('node:fs').writeSync(1, 'node ' + process.pid + '\\n');
      lib.execInPlace('/bin/sh', ['-c', 'echo "sh $$ $0 $1 $GREETING"', 'zero', 'one'], { GREETING: 'hello there', UNSET: undefined });
    `);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const [nodeLine, shLine] = result.stdout.trim().split('\n');
    const nodePid = /^node (\d+)$/.exec(nodeLine ?? '')?.[1];
    expect(nodePid).toBeDefined();
    expect(shLine).toBe(`sh ${nodePid} zero one hello there`);
  });

  it('passes exactly the given environment', () => {
    const result = runNode(`lib.execInPlace('/usr/bin/env', [], { ONLY: '1', EMPTY: '' });`);
    expect(result.stdout.trim().split('\n').sort()).toEqual(['EMPTY=', 'ONLY=1']);
  });

  it("hands the new program Node-free state: default signals, no mask, blocking stdio, stdin kept", () => {
    const result = runNode(`lib.execInPlace('/bin/sh', ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status; cat'], process.env);`, {
      input: 'from stdin\n',
    });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/from stdin\n$/);
    // Node ignores SIGPIPE and SIGXFSZ; a fresh program must not inherit that.
    expect(result.stdout).toContain('SigIgn:\t0000000000000000');
    expect(result.stdout).toContain('SigBlk:\t0000000000000000');
  });

  it('throws ENOENT for a missing program and the Node process carries on', () => {
    const result = runNode(`
      try {
        lib.execInPlace('/nonexistent/program', ['x']);
      } catch (error) {
        console.log(JSON.stringify({ name: error.name, code: error.code, syscall: error.syscall, message: error.message }));
      }
      setTimeout(() => console.log(JSON.stringify({ alive: true })), 10);
    `);
    expect(result.status).toBe(0);
    const [failure, alive] = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown);
    expect(failure).toEqual({
      name: 'KsmError',
      code: 'ENOENT',
      syscall: 'execve',
      message: 'execve: cannot execute /nonexistent/program: no such file or directory (ENOENT)',
    });
    expect(alive).toEqual({ alive: true });
  });

  it('throws EACCES for a file without execute permission, ENOEXEC for one the kernel cannot run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ksm-exec-'));
    try {
      writeFileSync(join(dir, 'plain'), 'data', { mode: 0o644 });
      writeFileSync(join(dir, 'garbage'), 'not a program', { mode: 0o755 });
      const result = runNode(`
        for (const name of ['plain', 'garbage']) {
          try { lib.execInPlace(require('node:path').join(${JSON.stringify(dir)}, name), []); } catch (error) { console.log(error.code + ' ' + error.message); }
        }
      `);
      expect(result.stdout.trim().split('\n')).toEqual([
        `EACCES execve: cannot execute ${dir}/plain: permission denied (EACCES)`,
        `ENOEXEC execve: cannot execute ${dir}/garbage (ENOEXEC)`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('hostile input (checked before anything runs)', () => {
    const cases: Array<[string, () => unknown, RegExp, ErrorConstructor]> = [
      ['no file', () => execInPlace(undefined as never, []), /file must be a string/, TypeError],
      ['an empty file', () => execInPlace('', []), /file must not be empty/, RangeError],
      ['a NUL in file', () => execInPlace('/bin/sh\0x', []), /file must not contain NUL bytes/, RangeError],
      ['args not an array', () => execInPlace('/bin/true', 'a b' as never), /args must be an array of strings/, TypeError],
      ['a number in args', () => execInPlace('/bin/true', [1] as never), /args\[0\] must be a string/, TypeError],
      ['a NUL in args', () => execInPlace('/bin/true', ['a', 'b\0c']), /args\[1\] must not contain NUL/, RangeError],
      ['env not an object', () => execInPlace('/bin/true', [], 'A=1' as never), /env must be an object/, TypeError],
      ['"=" in an env name', () => execInPlace('/bin/true', [], { 'A=B': '1' }), /env name "A=B" must not contain "="/, RangeError],
      ['a number in env', () => execInPlace('/bin/true', [], { A: 1 } as never), /env.A must be a string/, TypeError],
      ['a NUL in an env value', () => execInPlace('/bin/true', [], { A: 'x\0' }), /env.A must not contain NUL/, RangeError],
    ];
    for (const [what, call, message, type] of cases) {
      it(`refuses ${what}`, () => {
        expect(call).toThrow(type);
        expect(call).toThrow(message);
      });
    }
  });
});
