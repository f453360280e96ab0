import { chmodSync, chownSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requireOrSkip } from '../helpers/e2e.js';
import { AS_NOBODY, ksmArgv } from './support/cli.js';
import { fakeSysfs, knobValues, snapshotTree } from './support/fake-sysfs.js';
import { cleanEnv, run, type RunResult } from './support/run.js';

// RELIABILITY.md §9 (the CLI without root, and rollback). As user nobody:
// `ksm status` works; enable, disable and tune refuse with a message naming
// the knob and the permission, and nothing is written. A fake sysfs tree
// where nobody may write every knob but one: tune fails on that one and puts
// back every knob it had already changed.

const NOBODY = 65534;
const trees: string[] = [];

afterEach(() => {
  for (const tree of trees.splice(0)) rmSync(tree, { recursive: true, force: true });
});

/** A fake tree readable by everybody, written only by root: the kernel's own permissions. */
function rootOwnedTree(): string {
  const tree = fakeSysfs();
  chmodSync(tree, 0o755);
  trees.push(tree);
  return tree;
}

function ksmAsNobody(args: string[], sysfs?: string): RunResult {
  const [node, argv] = ksmArgv(args);
  const env = cleanEnv(sysfs ? { KSM_SYSFS_ROOT: sysfs, KSM_PERSIST_ROOT: sysfs } : {});
  return run(AS_NOBODY[0] ?? '', [...AS_NOBODY.slice(1), node, ...argv], { env, timeoutMs: 30_000 });
}

describe('the CLI without root', () => {
  it('as nobody, `ksm status` works on the real sysfs and on a fake tree', (ctx) => {
    requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
    const real = ksmAsNobody(['status']);
    expect(real.status, real.stderr.toString()).toBe(0);
    const fake = ksmAsNobody(['status', '--json'], rootOwnedTree());
    expect(fake.status, fake.stderr.toString()).toBe(0);
    expect(() => JSON.parse(fake.stdout.toString())).not.toThrow();
  });

  for (const [args, knob] of [
    [['enable'], 'run'],
    [['disable'], 'run'],
    [['disable', '--unmerge'], 'run'],
    [['tune', '--pages-to-scan', '1234'], 'pages_to_scan'],
    [['tune', '--sleep-ms', '77', '--use-zero-pages', '1'], 'sleep_millisecs|use_zero_pages'],
  ] as const) {
    it(`as nobody, \`ksm ${args.join(' ')}\` refuses, names ${knob} and root, writes nothing`, (ctx) => {
      requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
      const tree = rootOwnedTree();
      // ksmd stopped for enable, running otherwise: every command has something to change.
      writeFileSync(join(tree, 'run'), args[0] === 'enable' ? '0\n' : '1\n');
      const before = snapshotTree(tree);
      const result = ksmAsNobody([...args], tree);
      const stderr = result.stderr.toString();
      expect(result.status, stderr).toBe(1);
      expect(stderr).toMatch(/^ksm: /);
      expect(stderr).toMatch(new RegExp(knob));
      expect(stderr).toMatch(/root/);
      expect(snapshotTree(tree)).toEqual(before);
    });
  }
});

describe('tune rolls back when one write fails', () => {
  const TUNE = ['tune', '--pages-to-scan', '1234', '--sleep-ms', '77', '--use-zero-pages', '1', '--max-page-sharing', '300'];
  for (const failing of ['pages_to_scan', 'sleep_millisecs', 'use_zero_pages', 'max_page_sharing']) {
    it(`the write of ${failing} fails: exit 1 naming it, every knob back to its previous value`, (ctx) => {
      requireOrSkip(ctx, process.getuid?.() === 0 ? undefined : 'switching to user nobody needs root');
      const tree = rootOwnedTree();
      // nobody may write every knob but `failing`, which stays root's.
      chownSync(tree, NOBODY, NOBODY);
      for (const name of Object.keys(snapshotTree(tree))) if (name !== failing) chownSync(join(tree, name), NOBODY, NOBODY);
      const before = knobValues(tree);
      const result = ksmAsNobody(TUNE, tree);
      const stderr = result.stderr.toString();
      expect(result.status, stderr).toBe(1);
      expect(stderr).toMatch(new RegExp(failing));
      expect(knobValues(tree)).toEqual(before);
    });
  }
});
