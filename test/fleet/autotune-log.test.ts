import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { autotuneLogPath, DEFAULT_AUTOTUNE_LOG, readAutotuneDecisions } from '../../lib/fleet/autotune-log.js';

describe("reading autotune's decision log", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-autotune-log-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is empty when autotune has written nothing', () => {
    expect(readAutotuneDecisions(join(dir, 'missing.jsonl'), 20)).toEqual([]);
  });

  it('keeps the last decisions of a long log, skipping lines cut or not decisions', () => {
    const file = join(dir, 'long.jsonl');
    const lines = Array.from({ length: 5000 }, (_, index) => JSON.stringify({ time: `2026-12-01T10:00:${String(index % 60).padStart(2, '0')}.000Z`, action: `a${index}`, reason: 'r'.repeat(40), knobs: { pages_to_scan: index } }));
    writeFileSync(file, `${lines.join('\n')}\nnot json\n{"action":1}\n{"time":"2026-12-01T10:00:00.000Z","action":"to`);
    const decisions = readAutotuneDecisions(file, 3);
    expect(decisions.map((decision) => decision.action)).toEqual(['a4997', 'a4998', 'a4999']);
    expect(decisions[2]?.knobs).toEqual({ pages_to_scan: 4999 });
  });

  it('is found where KSM_AUTOTUNE_LOG says, else in /run/ksm-preload', () => {
    expect(autotuneLogPath({ KSM_AUTOTUNE_LOG: '/var/lib/x.jsonl' })).toBe('/var/lib/x.jsonl');
    expect(autotuneLogPath({})).toBe(DEFAULT_AUTOTUNE_LOG);
  });
});
