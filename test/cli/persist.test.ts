import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/tools.js';
import { MODERN_TREE, runInProcess, useFakeSysfs } from './harness.js';

let cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
  cleanups = [];
});

function fakeTree(): string {
  const fake = useFakeSysfs(MODERN_TREE);
  cleanups.push(fake.cleanup);
  return fake.root;
}

function knob(root: string, name: string): string {
  return readFileSync(join(root, name), 'utf8').trim();
}

describe('--persist', () => {
  function persistRoot(systemd: boolean): string {
    const dir = mkdtempSync(join(tmpdir(), 'ksm-cli-etc-'));
    if (systemd) mkdirSync(join(dir, 'run/systemd/system'), { recursive: true });
    const previous = process.env.KSM_PERSIST_ROOT;
    process.env.KSM_PERSIST_ROOT = dir;
    cleanups.push(() => {
      if (previous === undefined) delete process.env.KSM_PERSIST_ROOT;
      else process.env.KSM_PERSIST_ROOT = previous;
      rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }

  it('writes a tmpfiles.d entry on systemd hosts that systemd-tmpfiles applies', async (ctx) => {
    requireTool(ctx, 'systemd-tmpfiles');
    const root = fakeTree();
    const etc = persistRoot(true);
    expect((await runInProcess(['enable', '--persist'])).code).toBe(0);
    const result = await runInProcess(['tune', '--pages-to-scan', '900', '--persist']);
    expect(result.code).toBe(0);
    const file = join(etc, 'etc/tmpfiles.d/ksm-preload.conf');
    expect(result.stdout).toContain(`wrote ${file} (tmpfiles)`);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain(`w ${root}/pages_to_scan - - - - 900\nw ${root}/run - - - - 1\n`);
    // The real consumer: reset the fake knobs and let systemd-tmpfiles apply the file.
    writeFileSync(join(root, 'run'), '0');
    writeFileSync(join(root, 'pages_to_scan'), '100');
    const apply = spawnSync('systemd-tmpfiles', ['--create', file], { encoding: 'utf8' });
    expect(apply.stderr).toBe('');
    expect([knob(root, 'run'), knob(root, 'pages_to_scan')]).toEqual(['1', '900']);
  });

  it('writes an rc.local block elsewhere, keeping the rest of the file, and sh applies it', async () => {
    const root = fakeTree();
    const etc = persistRoot(false);
    mkdirSync(join(etc, 'etc'));
    writeFileSync(join(etc, 'etc/rc.local'), '#!/bin/sh -e\necho mine > /dev/null\nexit 0\n');
    expect((await runInProcess(['tune', '--sleep-ms', '40', '--persist'])).code).toBe(0);
    expect((await runInProcess(['enable', '--persist'])).code).toBe(0);
    const text = readFileSync(join(etc, 'etc/rc.local'), 'utf8');
    expect(text.match(/ksm-preload begin/g)).toHaveLength(1);
    expect(text).toMatch(/^#!\/bin\/sh -e\necho mine > \/dev\/null\n# ksm-preload begin.*\necho 40 > '.*\/sleep_millisecs'\necho 1 > '.*\/run'\n# ksm-preload end\nexit 0\n$/);
    writeFileSync(join(root, 'run'), '0');
    writeFileSync(join(root, 'sleep_millisecs'), '20');
    expect(spawnSync('sh', [join(etc, 'etc/rc.local')]).status).toBe(0);
    expect([knob(root, 'run'), knob(root, 'sleep_millisecs')]).toEqual(['1', '40']);
  });

  it('when persisting fails, the applied knobs are put back', async () => {
    const root = fakeTree();
    persistRoot(false);
    process.env.KSM_PERSIST_ROOT = '/proc/sys/kernel/cap_last_cap'; // not a folder: nothing can be written below it
    const result = await runInProcess(['tune', '--pages-to-scan', '555', '--persist']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot write \/proc\/sys\/kernel\/cap_last_cap\/etc\/rc.local/);
    expect(knob(root, 'pages_to_scan')).toBe('100');
  });
});
