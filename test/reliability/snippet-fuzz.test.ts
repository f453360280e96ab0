import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireOrSkip } from '../helpers/e2e.js';
import { parse as parseYaml } from 'yaml';
import { KsmError } from '../../lib/core/errors.js';
import { initSnippet, SNIPPET_FORMATS } from '../../lib/deploy/snippets.js';
import { ksm } from './support/cli.js';
import { repoRoot } from './support/native-build.js';
import { cleanEnv, run } from './support/run.js';

// RELIABILITY.md §9 (snippets): library paths from a fuzz corpus (quotes, $,
// backticks, %, spaces, colons, newlines, control and non-ASCII characters,
// injection attempts) through every snippet format. Each is refused with a
// typed error, or the snippet, read by the format's consumer, yields exactly
// that path in LD_PRELOAD, after any LD_PRELOAD already there where the format
// can keep it. Paths LD_PRELOAD can carry must be accepted.

const corpus = JSON.parse(readFileSync(join(repoRoot, 'test/fixtures/reliability/corpora/snippet-paths.json'), 'utf8')) as string[];
const CARRIABLE = /^\/[A-Za-z0-9._+/-]+$/;
const EXISTING = '/existing/libfirst.so';
const SYSTEM_PYTHON = '/usr/bin/python3';
const SUPERVISOR_PARSE =
  'import sys\nfrom supervisor.datatypes import dict_of_key_value_pairs\nsys.stdout.write(dict_of_key_value_pairs(sys.argv[1])["LD_PRELOAD"])';

function shell(script: string, preset?: string): string {
  const result = run('sh', ['-c', script], { env: cleanEnv(preset === undefined ? {} : { LD_PRELOAD: preset }) });
  if (result.status !== 0) throw new Error(`sh failed: ${result.stderr.toString()}`);
  return result.stdout.toString();
}

/** What each format's consumer reads back as LD_PRELOAD; `kept` when it keeps an existing value after the library. */
type ReadBack = { value: string; kept?: boolean };

// Dockerfile has no parser on this machine: its ENV line must carry the path unaltered.
const CONSUMERS: Partial<Record<string, (snippet: string) => ReadBack>> = {
  sysv: (snippet) => ({ value: shell(`${snippet}\nprintf '%s' "$LD_PRELOAD"`, EXISTING), kept: true }),
  openrc: (snippet) => ({ value: shell(`${snippet}\nprintf '%s' "$LD_PRELOAD"`, EXISTING), kept: true }),
  'docker-run': (snippet) => {
    // A stand-in docker that prints the arguments it was given, NUL-separated.
    const args = shell(`docker() { for a in "$@"; do printf '%s\\0' "$a"; done; }\n${snippet}`).split('\0');
    const value = args[args.indexOf('-e') + 1] ?? '';
    return { value: value.replace(/^LD_PRELOAD=/, '') };
  },
  compose: (snippet) => {
    const doc = parseYaml(snippet) as { services: { app: { environment: Record<string, string> } } };
    return { value: doc.services.app.environment.LD_PRELOAD ?? '' };
  },
  k8s: (snippet) => {
    const doc = parseYaml(snippet) as { env: Array<{ name: string; value: string }> };
    return { value: doc.env.find((entry) => entry.name === 'LD_PRELOAD')?.value ?? '' };
  },
  pm2: (snippet) => {
    const module = { exports: {} as { apps: Array<{ env: Record<string, string> }> } };
    new Function('module', 'process', snippet)(module, { env: { LD_PRELOAD: EXISTING } });
    return { value: module.exports.apps[0]?.env.LD_PRELOAD ?? '', kept: true };
  },
  supervisord: (snippet) => {
    // supervisord's own parser of environment= (Debian's supervisor package).
    const line = snippet.split('\n').find((l) => l.startsWith('environment=')) ?? '';
    const parsed = run(SYSTEM_PYTHON, ['-c', SUPERVISOR_PARSE, line.slice('environment='.length)]);
    if (parsed.status !== 0) throw new Error(`supervisor refused ${JSON.stringify(line)}: ${parsed.stderr.toString()}`);
    return { value: parsed.stdout.toString() };
  },
  systemd: (snippet) => {
    // systemd's unquoting of Environment="K=V": \\ and \" escapes, %% for %.
    const line = snippet.split('\n').find((l) => l.startsWith('Environment=')) ?? '';
    const quoted = /^Environment="(.*)"$/.exec(line)?.[1] ?? '';
    return { value: quoted.replace(/\\(.)/g, '$1').replace(/%%/g, '%').replace(/^LD_PRELOAD=/, '') };
  },
};

describe('snippet library paths from a fuzz corpus', () => {
  const formats = SNIPPET_FORMATS.filter((format) => format !== 'ksmd-boot');
  for (const format of formats) {
    it(`${format}: each of ${corpus.length} paths is refused with a typed error or read back exactly`, (ctx) => {
      if (format === 'supervisord') {
        const probe = run(SYSTEM_PYTHON, ['-c', 'import supervisor.datatypes']);
        requireOrSkip(ctx, probe.status === 0 ? undefined : 'supervisord\'s parser is missing (Debian package supervisor)');
      }
      let accepted = 0;
      for (const path of corpus) {
        let snippet: string;
        try {
          snippet = initSnippet({ format, libPath: path });
        } catch (error) {
          const typed = error instanceof KsmError || error instanceof TypeError || error instanceof RangeError;
          expect(typed, `${JSON.stringify(path)}: ${String(error)}`).toBe(true);
          expect(CARRIABLE.test(path), `${JSON.stringify(path)} can go into LD_PRELOAD but was refused`).toBe(false);
          continue;
        }
        accepted++;
        expect(CARRIABLE.test(path), `${JSON.stringify(path)} cannot go into LD_PRELOAD yet ${format} accepted it`).toBe(true);
        const consumer = CONSUMERS[format];
        if (!consumer) {
          expect(snippet.split('\n').find((line) => line.startsWith('ENV ')), format).toContain(path);
          continue;
        }
        const readBack = consumer(snippet);
        expect(readBack.value, `${format} with ${JSON.stringify(path)}`).toBe(readBack.kept ? `${path}:${EXISTING}` : path);
      }
      expect(accepted).toBe(corpus.filter((path) => CARRIABLE.test(path)).length);
    });
  }

  it('the CLI refuses hostile paths with `ksm: …` and a non-zero exit, and prints nothing on stdout', () => {
    // A sample (each is a Node start); NUL cannot pass through argv at all.
    const sample = corpus.filter((p) => !CARRIABLE.test(p) && !p.includes('\u0000')).filter((_, i) => i % 4 === 0);
    for (const path of sample) {
      const result = ksm(['snippet', 'sysv', '--lib', path]);
      expect(result.status, JSON.stringify(path)).not.toBe(0);
      expect(result.stdout.toString(), JSON.stringify(path)).toBe('');
      expect(result.stderr.toString()).toMatch(/^ksm: /);
    }
  });
});
