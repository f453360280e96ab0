const MIB = 1024 * 1024;

/** Bytes as MiB with one decimal: `12.5 MiB`, `-0.3 MiB`. */
export function formatMiB(bytes: number | undefined): string {
  if (bytes === undefined) return 'n/a';
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

const BARS = '▁▂▃▄▅▆▇█';

/** One bar per value, scaled between the smallest and largest. */
export function sparkline(values: readonly number[]): string {
  if (values.length === 0) return '';
  const low = Math.min(...values);
  const span = Math.max(...values) - low;
  return values.map((value) => BARS[span === 0 ? 0 : Math.round(((value - low) / span) * (BARS.length - 1))]).join('');
}

/** Rows as aligned columns; numeric-looking cells are right-aligned. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? '').length)));
  const numeric = header.map((_, column) => rows.length > 0 && rows.every((row) => /^-?[\d.]+( MiB)?$|^n\/a$/.test(row[column] ?? '')));
  return all
    .map((row) =>
      row
        .map((cell, column) => (numeric[column] ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `label: value` lines with the values lined up; an empty label continues the line above. */
export function formatFields(fields: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(...fields.map(([label]) => label.length)) + 1;
  return fields.map(([label, value]) => `${(label === '' ? '' : `${label}:`).padEnd(width)} ${value}`).join('\n');
}

/** --json output: one object, pretty when a person reads it on a terminal. */
export function formatJson(value: unknown, pretty: boolean): string {
  return `${JSON.stringify(value, null, pretty ? 2 : undefined)}\n`;
}
