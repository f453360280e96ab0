import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi, type TestContext } from 'vitest';
import { OPTIONAL_TOOLS, requireFile, requireTool, toolMissing, which } from './tools.js';

const work = mkdtempSync(join(tmpdir(), 'ksm-tools-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => vi.unstubAllEnvs());

/** A PATH of one folder holding these executables (and a non-executable decoy). */
function stubPath(...commands: string[]): string {
  const dir = mkdtempSync(join(work, 'bin-'));
  for (const command of commands) {
    writeFileSync(join(dir, command), '#!/bin/sh\n');
    chmodSync(join(dir, command), 0o755);
  }
  writeFileSync(join(dir, 'not-executable'), '');
  vi.stubEnv('PATH', dir);
  return dir;
}

/** A stand-in for vitest's context that records the skip instead of skipping this test. */
function recordingContext(): { ctx: TestContext; skipped: () => string | undefined } {
  let reason: string | undefined;
  const ctx = {
    skip: (note?: string) => {
      reason = note;
      throw new Error('skipped');
    },
  } as unknown as TestContext;
  return { ctx, skipped: () => reason };
}

describe('the optional-tool helper', () => {
  it('which finds executables on PATH only', () => {
    const dir = stubPath('valgrind');
    expect(which('valgrind')).toBe(join(dir, 'valgrind'));
    expect(which('not-executable')).toBeUndefined();
    expect(which('strace')).toBeUndefined();
  });

  it('requireTool returns the path when the tool is there', () => {
    const dir = stubPath('musl-gcc');
    vi.stubEnv('KSM_REQUIRE_E2E', '1');
    expect(requireTool(recordingContext().ctx, 'musl-gcc')).toBe(join(dir, 'musl-gcc'));
  });

  it('without the tool the test skips, naming the tool and its Debian package', () => {
    stubPath();
    vi.stubEnv('KSM_REQUIRE_E2E', '');
    const { ctx, skipped } = recordingContext();
    expect(() => requireTool(ctx, 'musl-gcc')).toThrow('skipped');
    expect(skipped()).toBe('musl-gcc is not installed (Debian package musl-tools)');
    expect(toolMissing('clang')).toBe('clang is not installed (Debian package clang)');
  });

  it('under KSM_REQUIRE_E2E=1 a missing tool fails the test instead', () => {
    stubPath();
    vi.stubEnv('KSM_REQUIRE_E2E', '1');
    const { ctx, skipped } = recordingContext();
    expect(() => requireTool(ctx, 'valgrind')).toThrow('KSM_REQUIRE_E2E=1 but this test cannot run: valgrind is not installed (Debian package valgrind)');
    expect(skipped()).toBeUndefined();
  });

  it('a file looked up by absolute path skips naming its package, and fails under KSM_REQUIRE_E2E=1', () => {
    const missing = join(work, 'libjemalloc.so.2');
    const { ctx, skipped } = recordingContext();
    vi.stubEnv('KSM_REQUIRE_E2E', '');
    expect(() => requireFile(ctx, missing, 'libjemalloc2')).toThrow('skipped');
    expect(skipped()).toBe(`${missing} is missing (Debian package libjemalloc2)`);
    vi.stubEnv('KSM_REQUIRE_E2E', '1');
    expect(() => requireFile(ctx, missing, 'libjemalloc2')).toThrow(/KSM_REQUIRE_E2E=1 .* \(Debian package libjemalloc2\)/);
    writeFileSync(missing, '');
    expect(() => requireFile(ctx, missing, 'libjemalloc2')).not.toThrow();
  });

  it('CI installs every package of the list, and docs/testing.md names every tool', () => {
    const repo = resolve(__dirname, '../..');
    const ci = readFileSync(join(repo, '.ci/run'), 'utf8');
    const installed = new Set(/apt-get install((?:[^\n\\]|\\\n)*)/.exec(ci)?.[1]?.split(/[\s\\]+/) ?? []);
    expect(Object.values(OPTIONAL_TOOLS).filter((pkg) => !installed.has(pkg))).toEqual([]);
    const docs = readFileSync(join(repo, 'docs/testing.md'), 'utf8').split('## Optional tools')[1] ?? '';
    expect(Object.keys(OPTIONAL_TOOLS).filter((tool) => !docs.includes(`\`${tool}\``))).toEqual([]);
  });

  it('a tool without a known package is a mistake in the test', () => {
    expect(() => toolMissing('frobnicate')).toThrow(TypeError);
    expect(toolMissing('frobnicate', 'frob-tools')).toMatch(/\(Debian package frob-tools\)$/);
  });
});

// --- Static check: every file that starts an optional tool has the helper ---

const TEST_ROOT = resolve(__dirname, '..');
const HELPER = resolve(__dirname, 'tools.ts');

/** Calls whose first argument is the program they start. */
const STARTERS = ['spawn', 'spawnSync', 'execFile', 'execFileSync', 'exec', 'execSync', 'run', 'runHeld', 'startProgram', 'startServer'];
const toolPattern = Object.keys(OPTIONAL_TOOLS).map((tool) => tool.replace(/[.+]/g, '\\$&')).join('|');
const STARTS_TOOL = new RegExp(`\\b(?:${STARTERS.join('|')})\\(\\s*(['"\`])(?:/usr)?(?:/s?bin/)?(${toolPattern})(?=[\\s'"\`])`, 'g');

/** Files that start an optional tool without being guarded, with the reason each may. */
const EXEMPT: Record<string, string> = {
  // Reads systemd's version to predict the snippet; without systemctl the code under test reads 0 too.
  'kernel/exec-survival.test.ts': 'systemctl',
};

function sourceFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((file) => /\.(ts|mts|mjs)$/.test(file) && !file.split('/').includes('fixtures') && !file.split('/').includes('node_modules'))
    .map((file) => join(root, file));
}

/** The files a source imports by relative path, without their extension. */
function relativeImports(file: string, text: string): string[] {
  return [...text.matchAll(/from\s+['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => resolve(dirname(file), m[1]!).replace(/\.(m?js|ts)$/, ''));
}

/**
 * Files under root that start a known optional tool (spawnSync('valgrind', …) and the like)
 * while neither they (directly or through a wrapper they import) nor every test importing
 * them use the helper: "file: tool" lines.
 */
function unguardedStarts(root: string, helper: string, exempt: Record<string, string> = {}): string[] {
  const files = sourceFiles(root);
  const texts = new Map(files.map((file) => [file, readFileSync(file, 'utf8')]));
  const helperModule = helper.replace(/\.ts$/, '');
  const importsHelper = (file: string | undefined): boolean => file !== undefined && texts.has(file) && relativeImports(file, texts.get(file)!).includes(helperModule);
  const moduleFile = (module: string): string | undefined => ['.ts', '.mts', '.mjs'].map((ext) => module + ext).find((file) => texts.has(file));
  // Guarded: the file imports the helper, or a wrapper of it (such as a folder's requireTools).
  const usesHelper = (file: string): boolean => importsHelper(file) || relativeImports(file, texts.get(file)!).some((module) => importsHelper(moduleFile(module)));
  const findings: string[] = [];
  for (const file of files) {
    if (file === helper) continue;
    const tools = new Set([...texts.get(file)!.matchAll(STARTS_TOOL)].map((m) => m[2]!));
    const name = relative(root, file);
    if (exempt[name]) tools.delete(exempt[name]);
    if (tools.size === 0 || usesHelper(file)) continue;
    const module = file.replace(/\.(m?ts|mjs)$/, '');
    const importers = files.filter((other) => /\.test\.ts$/.test(other) && relativeImports(other, texts.get(other)!).includes(module));
    if (!file.endsWith('.test.ts') && importers.length > 0 && importers.every(usesHelper)) continue;
    for (const tool of tools) findings.push(`${name}: ${tool}`);
  }
  return findings.sort();
}

describe('static check: optional tools are started only behind the helper', () => {
  it('every test file (and support file) that starts an optional tool uses test/helpers/tools.ts', () => {
    expect(unguardedStarts(TEST_ROOT, HELPER, EXEMPT)).toEqual([]);
  });

  it('the check finds an unguarded start, and accepts it once the helper guards the file or its tests', () => {
    const root = mkdtempSync(join(work, 'tree-'));
    const helper = join(root, 'helpers', 'tools.ts');
    const write = (file: string, text: string) => {
      mkdirSync(dirname(join(root, file)), { recursive: true });
      writeFileSync(join(root, file), text);
    };
    write('helpers/tools.ts', 'export {};\n');
    write('a/cost.test.ts', "import { spawnSync } from 'node:child_process';\nspawnSync(\n  'valgrind', ['--tool=callgrind']);\nspawnSync('/usr/bin/redis-server', []);\n");
    write('a/server.ts', "export const start = () => startProgram('/usr/sbin/mariadbd', []);\n");
    write('a/server.test.ts', "import { start } from './server.js';\n");
    write('a/plain.test.ts', "spawnSync('gcc', ['-v']); spawnSync('valgrindish', []); spawnSync(process.execPath, ['valgrind']);\n");
    expect(unguardedStarts(root, helper)).toEqual(['a/cost.test.ts: redis-server', 'a/cost.test.ts: valgrind', 'a/server.ts: mariadbd']);
    write('a/cost.test.ts', `import { requireTool } from '../helpers/tools.js';\n${readFileSync(join(root, 'a/cost.test.ts'), 'utf8')}`);
    write('a/server.test.ts', "import { toolMissing } from '../helpers/tools.js';\nimport { start } from './server.js';\n");
    expect(unguardedStarts(root, helper)).toEqual([]);
    write('a/wrapped.test.ts', "import { guard } from './guard.js';\nspawn('sqlite3', []);\n");
    expect(unguardedStarts(root, helper)).toEqual(['a/wrapped.test.ts: sqlite3']);
    write('a/guard.ts', "import { requireTool } from '../helpers/tools.js';\nexport const guard = requireTool;\n");
    expect(unguardedStarts(root, helper)).toEqual([]);
    write('a/plain.test.ts', "execSync('strace -f true');\n");
    expect(unguardedStarts(root, helper)).toEqual(['a/plain.test.ts: strace']);
    expect(unguardedStarts(root, helper, { 'a/plain.test.ts': 'strace' })).toEqual([]);
  });
});
