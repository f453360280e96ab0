// Writes the ESM entry point as a thin wrapper over the CommonJS build, so both
// `import` and `require` get one copy of the module (one KsmError class).
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const names = Object.keys(require('../dist/cjs/index.js')).filter((name) => name !== 'default' && name !== '__esModule');
mkdirSync(new URL('../dist/esm/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('../dist/esm/index.mjs', import.meta.url),
  `import cjs from '../cjs/index.js';\n\nexport const {\n${names.map((n) => `  ${n},`).join('\n')}\n} = cjs;\nexport default cjs;\n`,
);
writeFileSync(new URL('../dist/esm/index.d.mts', import.meta.url), "export * from '../cjs/index.js';\n");
