// Which test files the matrix runs: the globs of test/kernels/groups.mjs, expanded.
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { GROUPS } from '../../test/kernels/groups.mjs';

function listFiles(dir, root, found = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listFiles(path, root, found);
    else found.push(relative(root, path));
  }
  return found;
}

/** A glob as a regular expression: `**\/` is any run of folders, `*` stays inside one. */
function globToRegExp(glob) {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    if (glob.startsWith('**/', i)) {
      source += '(?:.*/)?';
      i += 2;
    } else if (glob[i] === '*') source += '[^/]*';
    else source += glob[i].replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** The groups with their files (relative to `repoRoot`), and every file once. */
export function selectTests(repoRoot) {
  const all = listFiles(join(repoRoot, 'test'), repoRoot).sort();
  const groups = GROUPS.map((group) => {
    const patterns = group.files.map(globToRegExp);
    return { ...group, files: all.filter((file) => patterns.some((pattern) => pattern.test(file))) };
  });
  const files = [...new Set(groups.flatMap((group) => group.files))];
  return { groups, files };
}
