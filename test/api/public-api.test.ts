import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// The public API is what lib/index.ts exports. This report lists every exported name
// with its declaration as tsc emits it, so that any change to the surface shows up
// in review as a change to public-api.report.txt (`npx vitest run -u` rewrites it).
const repoRoot = join(__dirname, '..', '..');
const entry = join(repoRoot, 'dist', 'cjs', 'index.d.ts');

function apiReport(): string {
  const program = ts.createProgram([entry], { noEmit: true, skipLibCheck: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(entry);
  if (!source) throw new Error(`${entry} was not loaded`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  if (!moduleSymbol) throw new Error(`${entry} is not a module`);
  const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });
  const entries = checker.getExportsOfModule(moduleSymbol).map((exported) => {
    const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declarations = (target.declarations ?? []).map((declaration) =>
      printer.printNode(ts.EmitHint.Unspecified, declaration, declaration.getSourceFile()).replace(/^export (declare )?/, ''),
    );
    return `## ${exported.name}\n${declarations.join('\n')}\n`;
  });
  return entries.sort().join('\n');
}

describe('the public API', () => {
  it('index.ts exports an explicit list: no `export *`', () => {
    expect(readFileSync(join(repoRoot, 'lib', 'index.ts'), 'utf8')).not.toMatch(/^export \*/m);
  });

  it('matches the checked-in report (after a deliberate change: `npx vitest run test/api/public-api.test.ts --update`)', async () => {
    if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
    await expect(apiReport()).toMatchFileSnapshot('public-api.report.txt');
  });

  it('the CommonJS and ESM entry points export the same names as the report', async () => {
    const names = [...apiReport().matchAll(/^## (\S+)$/gm)].map((match) => match[1]);
    const runtime = await import(join(repoRoot, 'dist', 'esm', 'index.mjs'));
    const cjs = require(join(repoRoot, 'dist', 'cjs', 'index.js')) as Record<string, unknown>;
    const values = names.filter((name) => name !== undefined && name in cjs);
    expect(Object.keys(cjs).filter((name) => name !== '__esModule').sort()).toEqual([...values].sort());
    expect(Object.keys(runtime).filter((name) => name !== 'default').sort()).toEqual([...values].sort());
  });
});
