import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { preloadLibrary } from '../../lib/core/paths.js';
import { BIN, runBin, runInProcess } from './harness.js';

describe('ksm where', () => {
  it('prints the absolute path of the built library, which a real process loads', () => {
    const result = runBin(['where']);
    expect(result.code).toBe(0);
    const path = result.stdout.trim();
    expect(isAbsolute(path)).toBe(true);
    expect(path).toBe(preloadLibrary().path);
    // The documented use: LD_PRELOAD=$(ksm where) CMD
    const maps = spawnSync('sh', ['-c', `LD_PRELOAD=$(${process.execPath} ${BIN} where) /usr/bin/python3 -c "print(open('/proc/self/maps').read())"`], {
      encoding: 'utf8',
      env: { ...process.env, KSM_PRELOAD_MODE: 'off' },
    }).stdout;
    expect(maps).toContain(path);
  });

  it('--json gives the path', async () => {
    const result = await runInProcess(['where', '--json']);
    expect(JSON.parse(result.stdout)).toEqual({ path: preloadLibrary().path });
  });
});

it('BIN is the package bin', () => {
  expect(JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')).bin.ksm).toBe('bin/ksm.js');
  expect(BIN.endsWith('bin/ksm.js')).toBe(true);
});
