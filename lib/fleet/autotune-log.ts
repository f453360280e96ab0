import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Where `ksm autotune` appends one JSON object per decision. */
export const DEFAULT_AUTOTUNE_LOG = '/run/ksm-preload/autotune.jsonl';

/** One decision of `ksm autotune`, as it logs it. */
export interface AutotuneDecision {
  /** ISO 8601 time of the decision. */
  time: string;
  action: string;
  reason: string;
  /** The knobs after the decision. */
  knobs: Record<string, string | number>;
}

/** The log file to read: KSM_AUTOTUNE_LOG overrides the default, as for autotune itself. */
export function autotuneLogPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.KSM_AUTOTUNE_LOG || DEFAULT_AUTOTUNE_LOG;
}

/** The log's tail holds far more than a dashboard's worth of lines. */
const TAIL_BYTES = 64 * 1024;

/**
 * The last `limit` decisions, newest last. A missing file (autotune not running) is
 * an empty list; lines that are not decisions (a torn last line) are skipped.
 */
export function readAutotuneDecisions(file: string, limit: number): AutotuneDecision[] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n');
    // The first line of a partial tail may be cut in the middle.
    if (length < size) lines.shift();
    const decisions: AutotuneDecision[] = [];
    for (const line of lines) {
      const decision = parseDecision(line);
      if (decision) decisions.push(decision);
    }
    return decisions.slice(-limit);
  } finally {
    closeSync(fd);
  }
}

function parseDecision(line: string): AutotuneDecision | undefined {
  if (!line.trim()) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { time, action, reason, knobs } = value as Record<string, unknown>;
  if (typeof action !== 'string' || typeof reason !== 'string') return undefined;
  return {
    time: typeof time === 'string' ? time : typeof time === 'number' ? new Date(time).toISOString() : '',
    action,
    reason,
    knobs: typeof knobs === 'object' && knobs !== null ? (knobs as AutotuneDecision['knobs']) : {},
  };
}
