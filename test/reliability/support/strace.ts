import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { run, type RunOptions, type RunResult } from './run.js';

const TRACED = 'openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,rmdir,mkdir,mkdirat,truncate,link,linkat,symlink,symlinkat,chmod,fchmodat,chown,fchownat';
const ALWAYS_CHANGING = /^(\/dev\/(null|tty|pts\/\d+|ptmx)$|pipe:|anon_inode:)/;
const WRITE_FLAGS = /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND/;

/**
 * Runs a command under strace -f (every child and exec'd program too) and
 * returns each path that any of them opened for writing, created, renamed,
 * removed, linked or changed: attempts count, also those that failed.
 */
export function pathsWritten(command: string, args: string[], options: RunOptions & { cwd: string }): { result: RunResult; written: string[] } {
  const log = resolve(options.cwd, `strace-${process.pid}-${Date.now()}.log`);
  const result = run('strace', ['-f', '-qq', '-s', '4096', '-e', `trace=${TRACED}`, '-e', 'signal=none', '-o', log, '--', command, ...args], options);
  const written = new Set<string>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const call = /^\d+\s+(\w+)\((.*)$/.exec(line);
    if (!call) continue;
    const [, name = '', rest = ''] = call;
    if ((name === 'openat' || name === 'open') && !WRITE_FLAGS.test(rest)) continue;
    for (const match of rest.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
      const path = resolve(options.cwd, JSON.parse(`"${match[1] ?? ''}"`) as string);
      if (!ALWAYS_CHANGING.test(path) && path !== log) written.add(path);
    }
  }
  rmSync(log, { force: true });
  return { result, written: [...written].sort() };
}
