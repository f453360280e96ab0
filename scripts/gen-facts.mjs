// Writes lib/core/facts.ts from native/common/ksm_facts.h, the one source of the facts
// C and TypeScript share. `--check` exits 1, writing nothing, when the file is stale.
import { readFileSync, writeFileSync } from 'node:fs';

const header = new URL('../native/common/ksm_facts.h', import.meta.url);
const target = new URL('../lib/core/facts.ts', import.meta.url);

const quote = (text) => `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/** The facts of the header, as TypeScript declarations. */
export function factsModule(text) {
  const lines = [
    '// Generated from native/common/ksm_facts.h by scripts/gen-facts.mjs (`npm run facts`): do not edit.',
    '',
  ];
  for (const match of text.matchAll(/^#define KSM_FACT_([A-Z0-9_]+) (.+)$/gm)) {
    const [, name, value] = match;
    const strings = [...value.matchAll(/"([^"\\]*)"/g)].map((m) => m[1]);
    if (/^\d+$/.test(value)) lines.push(`export const ${name} = ${value};`);
    else if (strings.length === 1 && /^"[^"]*"$/.test(value)) lines.push(`export const ${name} = ${quote(strings[0])};`);
    else if (strings.length > 1) lines.push(`export const ${name} = [${strings.map(quote).join(', ')}] as const;`);
    else throw new Error(`ksm_facts.h: KSM_FACT_${name} is neither a number, a string nor a list of strings: ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

const wanted = factsModule(readFileSync(header, 'utf8'));
if (process.argv.includes('--check')) {
  if (readFileSync(target, 'utf8') !== wanted) {
    process.stderr.write('lib/core/facts.ts is stale: run `npm run facts`\n');
    process.exit(1);
  }
} else {
  writeFileSync(target, wanted);
}
