import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { API_DOC, renderApiDoc } from '../../scripts/gen-docs.mjs';

// docs/api.md is generated from the TSDoc of the names lib/index.ts exports:
// regenerated here from the sources, it must match the checked-in file.
describe('docs/api.md', () => {
  it('matches the signatures and TSDoc of lib/index.ts\'s exports', () => {
    expect(readFileSync(API_DOC, 'utf8'), 'docs/api.md differs from the TSDoc: run `npm run build && npm run docs`').toBe(renderApiDoc());
  });

  it('documents every exported name', () => {
    const index = readFileSync(join(__dirname, '..', '..', 'lib', 'index.ts'), 'utf8');
    const text = readFileSync(API_DOC, 'utf8');
    const names = [...index.matchAll(/export (?:type )?\{([^}]*)\}/g)].flatMap((match) =>
      (match[1] ?? '').split(',').map((name) => name.replace(/^\s*type\s+/, '').trim()).filter(Boolean),
    );
    expect(names.length).toBeGreaterThan(50);
    for (const name of names) expect(text).toContain(`\n### ${name}\n`);
  });
});
