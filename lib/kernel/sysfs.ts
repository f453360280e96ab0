import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KsmError } from '../core/errors.js';

/**
 * The folder of KSM's knobs and counters. KSM_SYSFS_ROOT replaces it for tests,
 * which build fake trees (old kernels, negative profit, read-only files).
 */
export function ksmSysfsRoot(): string {
  return process.env.KSM_SYSFS_ROOT || '/sys/kernel/mm/ksm';
}

/** The text of one file, trimmed, or undefined when this kernel lacks it. */
export function readKsmFile(name: string): string | undefined {
  try {
    return readFileSync(join(ksmSysfsRoot(), name), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** A numeric file (counters may be negative: general_profit), or undefined when absent or not a number. */
export function readKsmNumber(name: string): number | undefined {
  const text = readKsmFile(name);
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

/** A knob's current value; choice knobs read "[none] scan-time" and yield the bracketed word. */
export function readKsmKnob(name: string): string | undefined {
  const text = readKsmFile(name);
  if (text === undefined) return undefined;
  return /\[(\S+)\]/.exec(text)?.[1] ?? text;
}

/** Writes one knob; a refusal becomes a KsmError naming the file and the errno. */
export function writeKsmKnob(name: string, value: string): void {
  const file = join(ksmSysfsRoot(), name);
  try {
    writeFileSync(file, value);
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    const detail =
      err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS'
        ? `cannot write ${value} to ${file}: needs root (and a writable /sys, which containers usually lack)`
        : `cannot write ${value} to ${file}: ${err.message}`;
    throw KsmError.fromNode('writeKsmKnob', error, detail);
  }
}
