// The live dashboard: polls /api/state and redraws. Plain browser script, no build step.
'use strict';

const MIB = 1024 * 1024;
const REFRESH_MS = 2000;
const RUN_STATES = { 0: 'stopped', 1: 'running', 2: 'stopped, unmerged' };

const mib = (bytes) => (bytes === undefined || bytes === null ? 'n/a' : (bytes / MIB).toFixed(1));
const byId = (id) => document.getElementById(id);

function setText(id, text) {
  byId(id).textContent = text;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

let chart;

function drawChart(history) {
  const times = history.map((sample) => sample[0]);
  const saved = history.map((sample) => (sample[1] === null ? null : sample[1] / MIB));
  const profit = history.map((sample) => (sample[2] === null ? null : sample[2] / MIB));
  const data = [times, saved, profit];
  if (chart) return chart.setData(data);
  const width = byId('chart').clientWidth - 16;
  chart = new uPlot(
    {
      width,
      height: 240,
      series: [
        {},
        { label: 'saved MiB', stroke: '#2a6fdb', fill: '#2a6fdb22', width: 2 },
        { label: 'profit MiB', stroke: '#197a3a', width: 1.5, dash: [6, 4] },
      ],
      axes: [{}, { label: 'MiB', size: 60 }],
    },
    data,
    byId('chart'),
  );
}

function showSystem(state) {
  const { system } = state;
  setText('saved-mib', mib(system.savedBytes));
  setText('pages-sharing', String(system.counters.pages_sharing ?? 'n/a'));
  setText('profit-mib', mib(system.profitBytes));
  setText('profit-source', system.profitSource === 'estimate' ? 'estimated (no general_profit)' : 'general_profit');
  const run = byId('ksmd-run');
  run.textContent = RUN_STATES[system.knobs.run] ?? `run=${system.knobs.run}`;
  run.className = system.knobs.run === '1' ? 'running' : 'stopped';
  run.dataset.run = system.knobs.run ?? '';
  setText('full-scans', String(system.counters.full_scans ?? 'n/a'));
  setText('ksmd-cpu', state.ksmdCpuSeconds === undefined ? 'n/a' : state.ksmdCpuSeconds.toFixed(2));
  setText('pages-shared', String(system.counters.pages_shared ?? 'n/a'));
  setText('sharing-ratio', system.sharingRatio === undefined ? 'n/a' : system.sharingRatio.toFixed(2));
  fillRows(
    byId('knobs').tBodies[0],
    Object.entries(system.knobs).map(([knob, value]) => {
      const tr = document.createElement('tr');
      tr.dataset.knob = knob;
      tr.append(cell(knob), cell(String(value), 'value num'));
      return tr;
    }),
  );
}

function showCgroups(state) {
  const note = state.fairShare.available
    ? `Fair share: each shared page's saving split among the processes that map it; ${mib(state.fairShare.totalSavedBytes)} MiB in all.`
    : `Fair share not available: ${state.fairShare.reason}`;
  setText('fair-share-note', `${note} ${state.scanned} processes scanned, ${state.unreadable} unreadable.`);
  const rows = state.cgroups.map((group) => {
    const tr = document.createElement('tr');
    tr.dataset.cgroup = group.cgroup.path;
    const methods = Object.entries(group.methods).map(([method, count]) => `${method} ${count}`).join(', ');
    tr.append(
      cell(group.cgroup.name),
      cell(group.cgroup.container ?? ''),
      cell(group.cgroup.pod ?? ''),
      cell(String(group.processes), 'num processes'),
      cell(mib(group.mergingBytes), 'num merged'),
      cell(mib(group.fairShareSavedBytes), 'num fair-share'),
      cell(mib(group.profitBytes), 'num profit'),
      cell(methods),
    );
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('no process merges or has opted in');
    td.colSpan = 8;
    tr.append(td);
    rows.push(tr);
  }
  fillRows(byId('cgroups').tBodies[0], rows);
}

function showAutotune(state) {
  const { decisions, log } = state.autotune;
  setText('autotune-note', decisions.length === 0 ? `No decisions in ${log}: is ksm autotune running?` : `From ${log}, newest first.`);
  fillRows(
    byId('autotune').tBodies[0],
    decisions
      .slice()
      .reverse()
      .map((decision) => {
        const tr = document.createElement('tr');
        tr.append(cell(decision.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z')), cell(decision.action), cell(decision.reason, 'reason'));
        return tr;
      }),
  );
}

async function refresh() {
  try {
    const response = await fetch('api/state', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    setText('host', state.hostname);
    showSystem(state);
    showCgroups(state);
    showAutotune(state);
    drawChart(state.history);
    const updated = byId('updated');
    updated.textContent = `updated ${new Date(state.time).toLocaleTimeString()}`;
    updated.dataset.time = String(state.time);
  } catch (error) {
    setText('updated', `cannot reach the exporter: ${error.message}`);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
