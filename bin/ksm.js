#!/usr/bin/env node
'use strict';
// The one exit point of the `ksm` command: main() resolves to the exit code.
const { main } = require('../dist/cjs/cli/main.js');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`ksm: internal error: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  },
);
