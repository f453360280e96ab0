import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { SNIPPET_FORMATS, initSnippet, validatePreloadPath } from '../../lib/deploy/snippets.js';
import { probedKernel, requireOrSkip } from '../helpers/e2e.js';
import { requireTool } from '../helpers/tools.js';
import { runBin, runInProcess } from './harness.js';

const LIB = '/usr/lib64/libksm_preload.so';
const EXISTING = '/opt/other/libfoo.so';
const work = mkdtempSync(join(tmpdir(), 'ksm-cli-snippet-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs a shell snippet, then prints the variables; the inherited LD_PRELOAD names no real file, so the loader only warns. */
function shellReadBack(snippet: string, env: Record<string, string>, names = ['LD_PRELOAD', 'KSM_PRELOAD_MODE']): Record<string, string> {
  const script = `${snippet}\n${names.map((name) => `printf '%s\\0' "$${name}"`).join('\n')}`;
  const result = spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  const values = result.stdout.split('\0');
  return Object.fromEntries(names.map((name, i) => [name, values[i] ?? '']));
}

describe('shell formats (sysv, openrc) read back through sh', () => {
  it.each(['sysv', 'openrc'] as const)('%s puts the library ahead of an existing LD_PRELOAD and sets the mode', (format) => {
    const snippet = initSnippet({ format, libPath: LIB, mode: 'madvise' });
    expect(shellReadBack(snippet, { LD_PRELOAD: EXISTING })).toEqual({ LD_PRELOAD: `${LIB}:${EXISTING}`, KSM_PRELOAD_MODE: 'madvise' });
    expect(shellReadBack(snippet, {})).toEqual({ LD_PRELOAD: LIB, KSM_PRELOAD_MODE: 'madvise' });
    // Exported: a child program sees it.
    const child = spawnSync('sh', ['-c', `${snippet}\nexec sh -c 'printf %s "$LD_PRELOAD"'`], { encoding: 'utf8' });
    expect(child.stdout).toBe(LIB);
  });

  it('mode auto sets no KSM_PRELOAD_MODE', () => {
    expect(initSnippet({ format: 'sysv', libPath: LIB })).not.toContain('KSM_PRELOAD_MODE');
  });
});

describe('docker run', () => {
  it('sh passes exactly the intended arguments to docker', () => {
    const snippet = initSnippet({ format: 'docker-run', libPath: LIB, mode: 'prctl' }).replace(/^\s*IMAGE$/m, '  IMAGE');
    const script = `docker() { printf '%s\\n' "$@"; }\n${snippet}`;
    const result = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
    expect(result.stdout.split('\n').filter(Boolean)).toEqual([
      'run',
      '--mount',
      `type=bind,source=${LIB},target=${LIB},readonly`,
      '-e',
      `LD_PRELOAD=${LIB}`,
      '-e',
      'KSM_PRELOAD_MODE=prctl',
      'IMAGE',
    ]);
  });
});

describe('YAML formats read back with a YAML parser', () => {
  it('k8s env', () => {
    const doc = parseYaml(initSnippet({ format: 'k8s', libPath: LIB, mode: 'madvise' }));
    expect(doc.env).toEqual([
      { name: 'LD_PRELOAD', value: LIB },
      { name: 'KSM_PRELOAD_MODE', value: 'madvise' },
    ]);
  });

  it('compose service', () => {
    const doc = parseYaml(initSnippet({ format: 'compose', libPath: LIB }));
    expect(doc.services.app.environment).toEqual({ LD_PRELOAD: LIB });
    expect(doc.services.app.volumes[0]).toEqual({ type: 'bind', source: LIB, target: LIB, read_only: true });
  });
});

describe('Dockerfile', () => {
  it('ENV references the image\'s own LD_PRELOAD with ${VAR:+...}', () => {
    const snippet = initSnippet({ format: 'docker', libPath: LIB, mode: 'prctl' });
    expect(snippet).toContain(`ENV LD_PRELOAD="${LIB}\${LD_PRELOAD:+:\${LD_PRELOAD}}"`);
    expect(snippet).toContain('ENV KSM_PRELOAD_MODE="prctl"');
    // Docker's word expansion follows sh for ${VAR:+word}: check the value with sh.
    const value = /^ENV LD_PRELOAD=(.*)$/m.exec(snippet)?.[1] ?? '';
    expect(shellReadBack(`LD_PRELOAD=${value}`, { LD_PRELOAD: EXISTING }, ['LD_PRELOAD'])).toEqual({ LD_PRELOAD: `${LIB}:${EXISTING}` });
  });
});

describe('pm2 ecosystem file', () => {
  it('node loads it and puts the library ahead of the LD_PRELOAD pm2 runs with', () => {
    const file = join(work, 'ecosystem.config.js');
    writeFileSync(file, initSnippet({ format: 'pm2', libPath: LIB, mode: 'madvise' }));
    const read = (env: Record<string, string>): unknown =>
      JSON.parse(spawnSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(file)}).apps[0].env)`], { env, encoding: 'utf8' }).stdout);
    expect(read({ LD_PRELOAD: EXISTING })).toEqual({ LD_PRELOAD: `${LIB}:${EXISTING}`, KSM_PRELOAD_MODE: 'madvise' });
    expect(read({})).toEqual({ LD_PRELOAD: LIB, KSM_PRELOAD_MODE: 'madvise' });
  });
});

describe('systemd drop-in', () => {
  it('systemd-analyze verify accepts a unit carrying the LD_PRELOAD form', (ctx) => {
    requireTool(ctx, 'systemd-analyze');
    const snippet = initSnippet({ format: 'systemd', libPath: LIB, mode: 'madvise', systemd: 'preload' });
    expect(snippet).toContain(`Environment="LD_PRELOAD=${LIB}"`);
    expect(snippet).toMatch(/cannot append/);
    const unit = join(work, 'ksm-snippet-test.service');
    writeFileSync(unit, `[Unit]\nDescription=ksm snippet test\n${snippet.replace('[Service]', '[Service]\nType=oneshot\nExecStart=/bin/true')}`);
    const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stderr).toBe('');
  });

  /** PATH with a fake `systemctl` that reports this version (or none on the PATH at all). */
  function withSystemd<T>(version: number | undefined, run: () => T): T {
    const bin = mkdtempSync(join(work, 'bin-'));
    if (version !== undefined) writeFileSync(join(bin, 'systemctl'), `#!/bin/sh\necho "systemd ${version} (${version}.1-1)"\n`, { mode: 0o755 });
    vi.stubEnv('PATH', version === undefined ? bin : `${bin}:${process.env.PATH ?? ''}`);
    try {
      return run();
    } finally {
      vi.unstubAllEnvs();
    }
  }

  it('picks MemoryKSM=yes only with systemd 256+ on a kernel that keeps the flag across exec', () => {
    const keeps = probedKernel().execSurvival;
    const memoryKsm = /^MemoryKSM=yes$/m;
    const preload = `Environment="LD_PRELOAD=${LIB}"`;
    expect(withSystemd(257, () => initSnippet({ format: 'systemd', libPath: LIB }))).toMatch(keeps ? memoryKsm : /LD_PRELOAD=/);
    expect(withSystemd(256, () => initSnippet({ format: 'systemd', libPath: LIB }))).toMatch(keeps ? memoryKsm : /LD_PRELOAD=/);
    // 254 and 255 fail every MemoryKSM=yes service with EINVAL; without systemd there is nothing to read it.
    for (const version of [255, 254, 252, undefined]) {
      const snippet = withSystemd(version, () => initSnippet({ format: 'systemd', libPath: LIB }));
      expect(snippet, `systemd ${version}`).toContain(preload);
      expect(snippet, `systemd ${version}`).not.toMatch(memoryKsm);
    }
    vi.stubEnv('KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC', '1');
    const lost = initSnippet({ format: 'systemd', libPath: LIB, systemd: 'auto' });
    vi.unstubAllEnvs();
    expect(withSystemd(257, () => lost)).toContain(preload);
  });

  it('MemoryKSM=yes on request, and the LD_PRELOAD form when madvise is asked for', () => {
    expect(initSnippet({ format: 'systemd', systemd: 'memory-ksm' })).toMatch(/^\[Service\]\nMemoryKSM=yes$/m);
    expect(initSnippet({ format: 'systemd', libPath: LIB, mode: 'madvise' })).not.toContain('MemoryKSM');
  });
});

describe('supervisord', () => {
  it('supervisord\'s own config parser reads the environment back', (ctx) => {
    const probe = spawnSync('/usr/bin/python3', ['-c', 'import supervisor.options'], { encoding: 'utf8' });
    requireOrSkip(ctx, probe.status === 0 ? undefined : 'supervisor is not installed (apt-get install supervisor)');
    const conf = join(work, 'supervisord.conf');
    const snippet = initSnippet({ format: 'supervisord', libPath: LIB, mode: 'madvise' });
    writeFileSync(conf, `[supervisord]\n[program:app]\ncommand=/bin/true\n${snippet}`);
    const script = [
      'from supervisor.options import ServerOptions',
      'import json, sys',
      'o = ServerOptions()',
      `o.realize(args=['-c', ${JSON.stringify(conf)}])`,
      'print(json.dumps(o.process_group_configs[0].process_configs[0].environment))',
    ].join('\n');
    const result = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8' });
    expect(JSON.parse(result.stdout)).toEqual({ LD_PRELOAD: LIB, KSM_PRELOAD_MODE: 'madvise' });
  });
});

describe('ksmd-boot', () => {
  it('gives a tmpfiles line and an rc.local line that start ksmd', () => {
    const snippet = initSnippet({ format: 'ksmd-boot' });
    expect(snippet).toContain('w /sys/kernel/mm/ksm/run - - - - 1');
    expect(snippet).toContain("echo 1 > '/sys/kernel/mm/ksm/run'");
  });
});

describe('hostile library paths', () => {
  it.each([
    ['relative', 'lib/libksm_preload.so', /not absolute/],
    ['space', '/opt/my libs/libksm_preload.so', /space or colon/],
    ['colon', '/opt/a:b/libksm_preload.so', /space or colon/],
    ['dollar', '/opt/$LIB/libksm_preload.so', /contains `\$`/],
    ['backtick', '/opt/`id`/libksm_preload.so', /characters outside/],
    ['single quote', "/opt/it's/libksm_preload.so", /characters outside/],
    ['double quote', '/opt/"x"/libksm_preload.so', /characters outside/],
    ['percent', '/opt/100%/libksm_preload.so', /characters outside/],
    ['newline', '/opt/a\nb/libksm_preload.so', /characters outside/],
    ['non-ASCII', '/opt/bibliothèque/libksm_preload.so', /characters outside/],
  ])('refuses a %s with a RangeError in every format', (_kind, path, reason) => {
    for (const format of SNIPPET_FORMATS.filter((name) => name !== 'ksmd-boot')) {
      let thrown: unknown;
      try {
        initSnippet({ format, libPath: path, systemd: 'preload' });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, format).toBeInstanceOf(RangeError);
      expect((thrown as RangeError).message).toMatch(reason);
    }
  });

  it('accepts the characters LD_PRELOAD can carry', () => {
    expect(validatePreloadPath('/opt/ksm-1.0_x+y/lib.so')).toBe('/opt/ksm-1.0_x+y/lib.so');
  });

  it('the CLI exits 2 for a refused path, in-process and spawned', async () => {
    const inProcess = await runInProcess(['snippet', 'sysv', '--lib', '/a b/lib.so']);
    const spawned = runBin(['snippet', 'sysv', '--lib', '/a b/lib.so']);
    for (const result of [inProcess, spawned]) {
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^ksm: library path "\/a b\/lib.so" cannot go into LD_PRELOAD/);
    }
  });
});

describe('ksm snippet CLI', () => {
  it('prints the snippet the API gives', async () => {
    const result = await runInProcess(['snippet', 'k8s', '--lib', LIB, '--mode', 'prctl']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(initSnippet({ format: 'k8s', libPath: LIB, mode: 'prctl' }));
  });

  it.each([
    [['snippet'], /which format\?/],
    [['snippet', 'upstart'], /unknown snippet format "upstart"/],
    [['snippet', 'sysv', '--mode', 'fast'], /mode must be one of auto, prctl, madvise/],
    [['snippet', 'systemd', '--systemd', 'both'], /systemd form must be/],
  ])('%j is a usage error', async (args, message) => {
    const result = await runInProcess(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });
});
