import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commands, main } from '../../lib/cli/main.js';
import { CLI_DOC, renderCliDoc } from '../../scripts/gen-docs.mjs';

// docs/cli.md is generated from the commands' --help texts: regenerated here from
// the sources, it must match the checked-in file.
describe('docs/cli.md', () => {
  it('matches `ksm --help` and every command\'s --help', async () => {
    const expected = await renderCliDoc({ commands, main });
    expect(readFileSync(CLI_DOC, 'utf8'), 'docs/cli.md differs from --help: run `npm run build && npm run docs`').toBe(expected);
  });

  it('has a section for every command', () => {
    const text = readFileSync(CLI_DOC, 'utf8');
    for (const command of commands) expect(text).toContain(`\n## ksm ${command.name}\n`);
  });
});
