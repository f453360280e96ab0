import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readAutotuneDecisions } from '../../lib/fleet/autotune-log.js';
import { AutotuneLogWriter } from '../../lib/fleet/autotune-log-writer.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ksm-autotune-log-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const decision = (n: number) => ({ time: new Date(n * 1000).toISOString(), action: 'boost', reason: `decision ${n}`, knobs: { run: 1, pages_to_scan: n } });

describe('the autotune state file', () => {
  it('holds one JSON object per line that the dashboard\'s reader reads back', () => {
    const file = join(dir, 'run', 'ksm-preload', 'autotune.jsonl');
    const writer = new AutotuneLogWriter(file);
    writer.append(decision(1));
    writer.append(decision(2));
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0] ?? '')).toEqual(decision(1));
    expect(readAutotuneDecisions(file, 10)).toEqual([decision(1), decision(2)]);
  });

  it('stays bounded: past 1000 lines it keeps the newest 500, and leaves no temporary file', () => {
    const file = join(dir, 'autotune.jsonl');
    // Lines left by an earlier run count too.
    writeFileSync(file, Array.from({ length: 990 }, (_, i) => `${JSON.stringify(decision(i))}\n`).join(''));
    const writer = new AutotuneLogWriter(file);
    for (let i = 990; i < 1001; i++) writer.append(decision(i));
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(500);
    expect(JSON.parse(lines.at(-1) ?? '').reason).toBe('decision 1000');
    expect(JSON.parse(lines[0] ?? '').reason).toBe('decision 501');
    expect(readdirSync(dir)).toEqual(['autotune.jsonl']);
    writer.append(decision(1001));
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(501);
  });

  it('a folder it cannot create is a KsmError naming the file', () => {
    const blocker = join(dir, 'file');
    writeFileSync(blocker, '');
    expect(() => new AutotuneLogWriter(join(blocker, 'autotune.jsonl'))).toThrow(/cannot create the folder of .*file\/autotune.jsonl/);
    expect(existsSync(join(blocker, 'autotune.jsonl'))).toBe(false);
  });
});
