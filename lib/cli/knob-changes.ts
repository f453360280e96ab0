// Applying knob changes and reporting what they did: shared by tune, enable and disable.
import { persistKnobs, type PersistResult } from '../kernel/persist.js';
import { applyKnobs, restoreKnobs, saveKnobs, validateKnobs, type KnobChanges, type KnobSnapshot } from '../kernel/tune.js';
import type { CliContext } from './command.js';
import { formatJson } from './format.js';
import { validateInput } from './usage.js';

/** What a change did to each knob, for the report. */
type ChangeReport = Record<string, { from: string | undefined; to: string | undefined }>;

function changeReport(before: KnobSnapshot, changed: KnobSnapshot): ChangeReport {
  const after = saveKnobs();
  const report: ChangeReport = {};
  for (const knob of Object.keys(changed) as Array<keyof KnobSnapshot>) {
    // run passes through 2 for knobs that need everything unmerged; report only what ends different.
    if (before[knob] !== after[knob]) report[knob] = { from: before[knob], to: after[knob] };
  }
  return report;
}

function formatReport(report: ChangeReport): string {
  const lines = Object.entries(report).map(([knob, { from, to }]) => `${knob}: ${from ?? 'n/a'} -> ${to ?? 'n/a'}\n`);
  return lines.length > 0 ? lines.join('') : 'nothing to change: every knob already has that value\n';
}

function formatPersisted(result: PersistResult): string {
  return `wrote ${result.file} (${result.mechanism}):\n${result.text}`;
}

/**
 * Applies knob changes, optionally persisting them; when persisting fails the
 * knobs go back as they were, so nothing is left half-done.
 */
export function applyAndReport(changes: KnobChanges, persist: boolean, context: CliContext, json: boolean): number {
  validateInput(() => validateKnobs(changes));
  const before = saveKnobs();
  const previous = applyKnobs(changes);
  let persisted: PersistResult | undefined;
  if (persist) {
    try {
      persisted = persistKnobs(changes);
    } catch (error) {
      restoreKnobs(previous);
      throw error;
    }
  }
  const report = changeReport(before, previous);
  if (json) context.stdout.write(formatJson({ changed: report, persisted }, context.stdout.isTTY === true));
  else context.stdout.write(formatReport(report) + (persisted ? formatPersisted(persisted) : ''));
  return 0;
}

