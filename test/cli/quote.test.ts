import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { quoteDockerfile, quoteJavaScript, quoteKubernetes, quoteShell, quoteSupervisord, quoteSystemd, quoteYaml } from '../../lib/deploy/quote.js';
import { requireTool } from '../helpers/tools.js';

const HOSTILE = [
  "it's",
  '"double"',
  '$HOME ${PATH} $(id)',
  '`id`',
  '100% %n %%',
  'back\\slash\\',
  'a b\tc',
  'x:y;z&&w|v',
  'bibliothèque ☃ 日本',
  '',
];
const WITH_NEWLINE = 'line1\nline2';

describe('quoteShell', () => {
  it.each([...HOSTILE, WITH_NEWLINE])('sh reads %j back byte for byte', (value) => {
    const result = spawnSync('sh', ['-c', `printf '%s' ${quoteShell(value)}`], { encoding: 'utf8' });
    expect(result.stdout).toBe(value);
  });
});

describe('quoteYaml / quoteKubernetes', () => {
  it.each([...HOSTILE, WITH_NEWLINE, '\u0085\u2028'])('a YAML parser reads %j back', (value) => {
    expect(parseYaml(`v: ${quoteYaml(value)}`).v).toBe(value);
  });

  it('doubles $ where compose interpolates, and $( for Kubernetes', () => {
    expect(parseYaml(`v: ${quoteYaml('a$b', { interpolates: true })}`).v).toBe('a$$b');
    expect(parseYaml(`v: ${quoteKubernetes('$(X)')}`).v).toBe('$$(X)');
  });
});

describe('quoteJavaScript', () => {
  it.each([...HOSTILE, WITH_NEWLINE, '\u2028'])('node evaluates %j back', (value) => {
    const result = spawnSync(process.execPath, ['-e', `process.stdout.write(${quoteJavaScript(value)})`], { encoding: 'utf8' });
    expect(result.stdout).toBe(value);
  });
});

describe('quoteSystemd', () => {
  it('systemd-analyze verify accepts every hostile value without a warning (an unescaped % would fail to resolve)', (ctx) => {
    requireTool(ctx, 'systemd-analyze');
    const dir = mkdtempSync(join(tmpdir(), 'ksm-cli-quote-'));
    try {
      const unit = join(dir, 'ksm-quote-test.service');
      const environment = HOSTILE.filter((value) => !/[\x00-\x1f]/.test(value)).map((value, i) => `Environment=${quoteSystemd(`V${i}=${value}`)}`).join('\n');
      writeFileSync(unit, `[Unit]\nDescription=quote test\n[Service]\nType=oneshot\nExecStart=/bin/true\n${environment}\n`);
      const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      // The same check fails for a raw %: the test can tell.
      writeFileSync(unit, '[Unit]\nDescription=quote test\n[Service]\nType=oneshot\nExecStart=/bin/true\nEnvironment="V=x %Z"\n');
      expect(spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' }).stderr).toMatch(/specifiers/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('formats that cannot carry everything', () => {
  it('systemd refuses control characters, doubles %, escapes quotes', () => {
    expect(() => quoteSystemd(WITH_NEWLINE)).toThrow(RangeError);
    expect(quoteSystemd('A=100% "q" \\')).toBe('"A=100%% \\"q\\" \\\\"');
    expect(quoteSystemd('$HOME')).toBe('"$HOME"'); // Environment= keeps $ literal
  });

  it('Dockerfile refuses newlines, escapes $ " \\', () => {
    expect(() => quoteDockerfile(WITH_NEWLINE)).toThrow(/newlines/);
    expect(quoteDockerfile('a$b"c\\')).toBe('"a\\$b\\"c\\\\"');
  });

  it('supervisord refuses control characters, doubles %', () => {
    expect(() => quoteSupervisord('a\tb')).toThrow(RangeError);
    expect(quoteSupervisord('50% "x"')).toBe('"50%% \\"x\\""');
  });
});
