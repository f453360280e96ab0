// The public API: one module per concern, re-exported here.
export * from './errors.js';
export { preloadLibrary, launcher, type BuiltFile } from './paths.js';
export * from './support.js';
export * from './mark.js';
export * from './alloc.js';
export * from './process-merging.js';
export * from './process-stats.js';
export * from './exec.js';
export * from './system-stats.js';
export * from './tune.js';
export * from './persist.js';
export * from './snippets.js';
export * from './quote.js';
export * from './install-lib.js';
export * from './top.js';
export * from './doctor.js';
export * from './analyze.js';
export * from './demo.js';
