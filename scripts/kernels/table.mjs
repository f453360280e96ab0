#!/usr/bin/env node
// The matrix's table, from build/kernels/summary.json: plain text for the terminal, or,
// run as `node scripts/kernels/table.mjs --markdown`, the tables of docs/kernels.md.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const columnTitle = (entry) => (entry.column === 'host' ? `host ${entry.release}` : entry.release ?? entry.column);

function cell(entry, groupName) {
  if (entry.unavailable && entry.groups.length === 0) return 'not run';
  const group = entry.groups.find((candidate) => candidate.name === groupName);
  if (!group) return '-';
  const total = group.passed + group.failed;
  const notes = [group.notApplicable ? `${group.notApplicable} n/a` : '', group.skipped ? `${group.skipped} skipped` : ''].filter(Boolean).join(', ');
  const suffix = notes ? ` (${notes})` : '';
  return group.failed ? `FAIL ${group.failed}/${total}${suffix}` : `pass ${group.passed}${suffix}`;
}

function groupNames(summary) {
  return [...new Set(summary.columns.flatMap((entry) => entry.groups.map((group) => group.name)))];
}

function pad(rows) {
  const widths = rows[0].map((_, index) => Math.max(...rows.map((row) => row[index].length)));
  return rows.map((row) => row.map((text, index) => text.padEnd(widths[index])).join('  ').trimEnd()).join('\n');
}

/** Test group × kernel, pass/fail, with the time each column took. */
export function formatTable(summary) {
  const rows = [['test group', ...summary.columns.map(columnTitle)]];
  for (const name of groupNames(summary)) rows.push([name, ...summary.columns.map((entry) => cell(entry, name))]);
  rows.push(['time', ...summary.columns.map((entry) => (entry.seconds ? `${entry.seconds.toFixed(0)} s` : '-'))]);
  const notes = summary.columns.filter((entry) => entry.unavailable).map((entry) => `${entry.column}: ${entry.unavailable}`);
  return [pad(rows), ...notes].join('\n');
}

const limitLines = (text, count) => {
  const lines = text.trimEnd().split('\n');
  return lines.length <= count ? lines.join('\n') : [...lines.slice(0, count), `… ${lines.length - count} more lines`].join('\n');
};

/** Every failure with what the guest (or host) printed for it. */
export function formatFailures(summary, resultsRoot) {
  const parts = [];
  for (const entry of summary.columns) {
    for (const group of entry.groups.filter((candidate) => candidate.failed)) {
      for (const failure of group.failures) {
        parts.push(`--- ${columnTitle(entry)} | ${group.name}\n${failure.test}\n${limitLines(failure.message, 40)}`);
      }
    }
    if (entry.status !== 0 && entry.status !== undefined && !entry.groups.some((group) => group.failed)) {
      const refusals = entry.groups.reduce((sum, group) => sum + (group.notApplicable ?? 0), 0);
      parts.push(
        refusals > 0
          ? `--- ${columnTitle(entry)}: exit status ${entry.status}, from the ${refusals} tests that refused to run where the kernel lacks their feature (n/a above)`
          : `--- ${columnTitle(entry)}: exit status ${entry.status} with no failing test`,
      );
    }
    const consoleFile = join(resultsRoot, entry.column, 'console.log');
    if (entry.unavailable && existsSync(consoleFile)) {
      parts.push(`--- ${columnTitle(entry)}: last lines of the console\n${readFileSync(consoleFile, 'utf8').trimEnd().split('\n').slice(-60).join('\n')}`);
    }
  }
  return parts.join('\n\n');
}

const yesNo = (value) => (value ? 'yes' : 'no');
const percent = (ratio) => `${(ratio * 100).toFixed(1)} %`;
/** An absent figure: not applicable where the kernel lacks prctl, else its test failed. */
const absent = (mode, figures) => (mode === 'prctl' && !figures.features.prctl ? 'n/a (no prctl)' : 'not measured');

/** The docs' tables: features probed, coverage and merge figures, test groups. */
export function formatMarkdown(summary) {
  const entries = summary.columns.filter((entry) => entry.figures);
  const header = (first) => `| ${first} | ${entries.map(columnTitle).join(' | ')} |\n|---|${entries.map(() => '---').join('|')}|`;
  const row = (name, value) => `| ${name} | ${entries.map((entry) => value(entry.figures)).join(' | ')} |`;
  const features = [
    header('feature (probed)'),
    row('`PR_SET_MEMORY_MERGE` (prctl)', (f) => yesNo(f.features.prctl)),
    row('merge flag survives execve', (f) => yesNo(f.features.execSurvival)),
    row('`PROCMAP_QUERY` ioctl', (f) => yesNo(f.features.procmapQuery)),
    row('`/proc/PID/ksm_stat` fields', (f) => f.features.ksmStatFields.join(', ') || 'none'),
    row('`general_profit`', (f) => yesNo(f.features.generalProfit)),
    row('`ksm_zero_pages`', (f) => yesNo(f.features.ksmZeroPages)),
    row('`smart_scan`', (f) => yesNo(f.features.smartScan)),
    row('scan-time advisor', (f) => yesNo(f.features.advisor)),
  ];
  const workloads = [...new Set(entries.flatMap((entry) => Object.keys(entry.figures.coverage)))];
  const modes = ['madvise', 'auto', 'prctl'];
  const figures = [header('`ksm run` coverage (smaps `mg`)')];
  for (const workload of workloads) {
    for (const mode of modes) {
      figures.push(row(`${workload}, --mode ${mode}`, (f) => (f.coverage[workload]?.[mode] === undefined ? absent(mode, f) : percent(f.coverage[workload][mode]))));
    }
  }
  for (const mode of modes) {
    figures.push(row(`\`ksm demo\` --mode ${mode}: merged of ideal`, (f) => {
      const demo = f.demo[mode];
      return demo ? `${percent(demo.fractionOfIdeal)} (90 % after ${demo.secondsTo90 === null ? 'never' : `${demo.secondsTo90.toFixed(1)} s`})` : absent(mode, f);
    }));
  }
  const groups = [`| test group | ${summary.columns.map(columnTitle).join(' | ')} |`, `|---|${summary.columns.map(() => '---').join('|')}|`];
  for (const name of groupNames(summary)) groups.push(`| ${name} | ${summary.columns.map((entry) => cell(entry, name)).join(' | ')} |`);
  groups.push(`| time | ${summary.columns.map((entry) => (entry.seconds ? `${entry.seconds.toFixed(0)} s` : '-')).join(' | ')} |`);
  return [features.join('\n'), figures.join('\n'), groups.join('\n')].join('\n\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const summaryFile = join(fileURLToPath(new URL('../../build/kernels/summary.json', import.meta.url)));
  const summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
  console.log(process.argv.includes('--markdown') ? `Run of ${summary.date} (total ${summary.seconds.toFixed(0)} s).\n\n${formatMarkdown(summary)}` : formatTable(summary));
}
