import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ksmArgv } from './support/cli.js';
import { fakeSysfs } from './support/fake-sysfs.js';
import { fixture } from './support/native-build.js';
import { cleanEnv, explain, modeEnv } from './support/run.js';
import { pathsWritten } from './support/strace.js';
import { requireTool } from '../helpers/tools.js';

// RELIABILITY.md §10: no command writes outside what it names. Every command runs
// under strace -f (children and exec'd programs included); every path opened
// for writing, created, renamed or removed, even by a failed attempt, must lie
// inside what the command says it writes. Nothing ever writes /etc/ld.so.preload.
// Commands that change knobs run against a fake sysfs tree and a fake root for
// --persist, so the test never touches the real ones.

const LD_SO_PRELOAD = '/etc/ld.so.preload';
let work: string;
let ldSoPreloadBefore: string;

function ldSoPreloadState(): string {
  return existsSync(LD_SO_PRELOAD) ? `present, mtime ${statSync(LD_SO_PRELOAD).mtimeMs}` : 'absent';
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'ksm-writes-'));
  ldSoPreloadBefore = ldSoPreloadState();
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  expect(ldSoPreloadState(), '/etc/ld.so.preload changed').toBe(ldSoPreloadBefore);
});

function traceKsm(args: string[], env: NodeJS.ProcessEnv = {}): string[] {
  const [node, argv] = ksmArgv(args);
  const { result, written } = pathsWritten(node, argv, { cwd: work, env: cleanEnv(env), timeoutMs: 60_000 });
  expect(result.status, `ksm ${args.join(' ')}: ${explain(result)}`).toBe(0);
  expect(written, `ksm ${args.join(' ')} wrote ${LD_SO_PRELOAD}`).not.toContain(LD_SO_PRELOAD);
  return written;
}

const inside = (folder: string) => (path: string) => path === folder || path.startsWith(`${folder}/`);

describe('no command writes outside what it names', () => {
  const READ_ONLY: string[][] = [
    ['status'],
    ['status', '--json'],
    ['doctor'],
    ['where'],
    ['top'],
    ['--help'],
    ...['sysv', 'systemd', 'openrc', 'docker', 'docker-run', 'compose', 'k8s', 'supervisord', 'pm2', 'ksmd-boot'].map((f) => ['snippet', f]),
  ];
  for (const args of READ_ONLY) {
    it(`ksm ${args.join(' ')} writes nothing`, (ctx) => {
      requireTool(ctx, 'strace', 'strace');
      // doctor exits 1 when a check fails; what matters here is what it wrote.
      const [node, argv] = ksmArgv(args);
      const { written } = pathsWritten(node, argv, { cwd: work, env: cleanEnv(), timeoutMs: 60_000 });
      expect(written).toEqual([]);
    });
  }

  it('ksm install-lib --prefix DIR writes only inside DIR', (ctx) => {
    requireTool(ctx, 'strace', 'strace');
    const prefix = join(work, 'prefix', 'lib64');
    mkdirSync(prefix, { recursive: true });
    const written = traceKsm(['install-lib', '--prefix', prefix]);
    expect(written.filter((path) => !inside(prefix)(path))).toEqual([]);
    expect(existsSync(join(prefix, 'libksm_preload.so'))).toBe(true);
  });

  it('ksm enable writes only the run knob', (ctx) => {
    requireTool(ctx, 'strace', 'strace');
    const sysfs = fakeSysfs();
    writeFileSync(join(sysfs, 'run'), '0\n');
    try {
      const written = traceKsm(['enable'], { KSM_SYSFS_ROOT: sysfs, KSM_PERSIST_ROOT: join(work, 'no-root') });
      expect(written).toEqual([join(sysfs, 'run')]);
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });

  it('ksm tune --persist writes only the knobs it sets and its one boot file', (ctx) => {
    requireTool(ctx, 'strace', 'strace');
    const sysfs = fakeSysfs();
    const root = join(work, 'fake-root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    try {
      const written = traceKsm(['tune', '--pages-to-scan', '1234', '--sleep-ms', '77', '--persist'], { KSM_SYSFS_ROOT: sysfs, KSM_PERSIST_ROOT: root });
      const knobs = written.filter(inside(sysfs));
      const boot = written.filter(inside(root));
      expect(written.filter((path) => !inside(sysfs)(path) && !inside(root)(path))).toEqual([]);
      expect(knobs.sort()).toEqual([join(sysfs, 'pages_to_scan'), join(sysfs, 'sleep_millisecs')]);
      // The boot file (tmpfiles.d or rc.local), its folders (mkdir -p), and a temporary sibling renamed over it.
      expect(boot.some((path) => /(ksm-preload\.conf|rc\.local)$/.test(path)), 'nothing persisted').toBe(true);
      for (const path of boot) expect(path).toMatch(/\/etc(\/tmpfiles\.d(\/ksm-preload\.conf(\.[^/]*)?)?|\/rc\.local(\.[^/]*)?)?$/);
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });

  it('the preload library and `ksm run` write nothing into a program they start', (ctx) => {
    requireTool(ctx, 'strace', 'strace');
    for (const [command, args, env] of [
      [fixture('alloc_mix'), [], modeEnv('madvise', { KSM_PRELOAD_VERBOSE: '1' })],
      [fixture('alloc_mix'), [], modeEnv('prctl', { KSM_PRELOAD_VERBOSE: '1' })],
      ...(['auto', 'madvise'] as const).map((mode) => [...ksmArgv(['run', '--mode', mode, '--', fixture('alloc_mix')]), cleanEnv()] as const),
    ] as const) {
      const { result, written } = pathsWritten(command, [...args], { cwd: work, env, timeoutMs: 60_000 });
      expect(result.status, explain(result)).toBe(0);
      expect(written, `${command} ${args.join(' ')}`).toEqual([]);
    }
  });
});
