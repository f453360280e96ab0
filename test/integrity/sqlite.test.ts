import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { withKsmd } from '../helpers/ksmd.js';
import { AGGRESSIVE_KSMD, exited, filler, LIBRARY_MODES, MergeSamples, requireTools, seededRandom, serverEnv, stopServer, WITH_KSMD, type IntegrityMode } from './support.js';

// The sqlite3 shell under the library, with ksmd merging as fast as it can, runs
// inserts, updates, deletes, rollbacks and savepoints with a large page cache;
// PRAGMA integrity_check and a hash of the content (the shell's .sha3sum, and of
// .dump in a fresh shell without the library) must equal a run without the library.
// The page cache itself rarely holds two equal pages (each database page carries its
// own header, and cache slots straddle memory pages), so the shell also keeps
// preallocated zero blobs in an in-memory database of 64 KiB pages: memory ksmd merges
// beside the pages being written, in the same heap.

const TOOLS: Array<[string, string]> = [['sqlite3', 'sqlite3']];
const PHASES = 6;

const work = mkdtempSync(join(tmpdir(), 'ksm-integrity-sqlite-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The same SQL on every run: settings and schema, then phases of transactions. */
function workload(): string[] {
  const random = seededRandom(3_141_593);
  const phases = [
    `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;
     CREATE TABLE items (id INTEGER PRIMARY KEY, category TEXT NOT NULL, price INTEGER NOT NULL, body TEXT NOT NULL);
     CREATE INDEX items_category ON items (category, price);
     CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER NOT NULL, delta INTEGER NOT NULL, note TEXT);
     CREATE TABLE docs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
     ATTACH ':memory:' AS scratch; PRAGMA scratch.page_size = 65536;
     CREATE TABLE scratch.reserved (data BLOB NOT NULL);
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16) INSERT INTO scratch.reserved SELECT zeroblob(1048576) FROM n;`,
  ];
  for (let phase = 1; phase <= PHASES; phase++) {
    const sql = ['BEGIN;'];
    for (let i = 0; i < 3000; i++) {
      const id = phase * 10_000 + i;
      sql.push(`INSERT INTO items VALUES (${id}, 'cat-${id % 37}', ${random(100_000)}, '${filler(id, 100 + random(600))}');`);
    }
    sql.push('COMMIT;');
    for (let t = 0; t < 200; t++) {
      const item = (1 + random(phase)) * 10_000 + random(3000);
      const delta = random(1000) - 500;
      sql.push(
        'BEGIN;',
        `UPDATE items SET price = price + ${delta}, body = substr(body, 1, 80) || '${filler(t, 40)}' WHERE id = ${item};`,
        `INSERT INTO events (item, delta, note) VALUES (${item}, ${delta}, '${filler(t, 60)}');`,
        'SAVEPOINT inner_step;',
        `DELETE FROM items WHERE id = ${item + 1};`,
        t % 4 === 3 ? 'ROLLBACK TO inner_step;' : 'RELEASE inner_step;',
        t % 10 === 9 ? 'ROLLBACK;' : 'COMMIT;',
      );
    }
    sql.push('BEGIN;');
    for (let d = 0; d < 40; d++) sql.push(`INSERT INTO docs VALUES (${phase * 100 + d}, CAST('${filler(d, 2000 + random(20_000))}' AS BLOB));`);
    sql.push(`UPDATE docs SET data = zeroblob(length(data) + ${random(8192)}) WHERE id % 5 = ${phase % 5};`);
    sql.push(`DELETE FROM events WHERE id % 9 = ${phase};`, `DELETE FROM items WHERE id % 17 = ${phase} AND price < 20000;`, 'COMMIT;');
    phases.push(sql.join('\n'));
  }
  return phases;
}

/** A sqlite3 shell fed statement by statement; each batch ends with a marker it echoes back. */
class Shell {
  private output = '';
  private waiting: { marker: string; resolve: (text: string) => void } | undefined;
  private batches = 0;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
      this.settle();
    });
  }

  /** Runs `sql` and resolves with what it printed. */
  run(sql: string): Promise<string> {
    const marker = `-- batch ${++this.batches} done --`;
    return new Promise((resolve, reject) => {
      this.waiting = { marker, resolve };
      this.child.once('exit', (code) => reject(new Error(`sqlite3 exited (${code}) before ${marker}`)));
      this.child.stdin?.write(`${sql}\nSELECT '${marker}';\n`);
      this.settle();
    });
  }

  private settle(): void {
    if (!this.waiting) return;
    const at = this.output.indexOf(`${this.waiting.marker}\n`);
    if (at < 0) return;
    const text = this.output.slice(0, at);
    this.output = this.output.slice(at + this.waiting.marker.length + 1);
    const { resolve } = this.waiting;
    this.waiting = undefined;
    resolve(text);
  }
}

interface Verdict {
  integrity: string;
  contentHash: string;
  dumpHash: string;
  counts: string;
}

async function runWorkload(mode: IntegrityMode): Promise<{ verdict: Verdict; merges: MergeSamples | undefined }> {
  const dir = join(work, mode);
  mkdirSync(dir);
  const database = join(dir, 'data.db');
  // -bail: the first failed statement ends the shell, so a failure cannot pass unseen.
  const child = spawn('sqlite3', ['-bail', '-batch', database], { env: serverEnv(mode), stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const shell = new Shell(child);
  try {
    const merges = mode === 'off' ? undefined : new MergeSamples(child.pid ?? 0);
    for (const [index, phase] of workload().entries()) {
      await shell.run(phase);
      // The schema and first rows fill the page cache: ksmd gets something to merge before the rest is written.
      if (index === 1 && merges) expect(await merges.waitMerged(), `sqlite3 (${mode}) got memory merged`).toBe(true);
      else if (index > 1) merges?.take();
    }
    const integrity = (await shell.run('PRAGMA integrity_check;')).trim();
    const contentHash = (await shell.run('.sha3sum')).trim();
    const counts = (await shell.run('SELECT count(*), sum(price) FROM items; SELECT count(*), sum(delta) FROM events; SELECT count(*), sum(length(data)) FROM docs;')).trim();
    merges?.take();
    child.stdin?.end();
    expect(await exited(child), stderr).toBe(0);
    const dump = spawnSync('sqlite3', ['-batch', database, '.dump'], { env: serverEnv('off'), maxBuffer: 256 << 20, timeout: 60_000 });
    expect(dump.status, dump.stderr?.toString()).toBe(0);
    return { verdict: { integrity, contentHash, dumpHash: createHash('sha256').update(dump.stdout).digest('hex'), counts }, merges };
  } finally {
    if (child.exitCode === null) await stopServer(child, 'SIGKILL');
    if (stderr !== '') throw new Error(`sqlite3 (${mode}) wrote to stderr: ${stderr}`);
  }
}

let baseline: Verdict | undefined;

async function baselineVerdict(ctx: TestContext): Promise<Verdict> {
  requireTools(ctx, TOOLS);
  baseline ??= (await runWorkload('off')).verdict;
  return baseline;
}

describe('sqlite keeps every write under merging', () => {
  it('the workload without the library passes its integrity check', { timeout: 120_000 }, async (ctx) => {
    const verdict = await baselineVerdict(ctx);
    expect(verdict.integrity).toBe('ok');
    expect(verdict.contentHash).toMatch(/^[0-9a-f]{40,}$/);
    expect(Number(verdict.counts.split('|')[0])).toBeGreaterThan(10_000);
  });

  for (const mode of LIBRARY_MODES) {
    it(`under the library (${mode}) with ksmd merging: integrity_check and content hashes match`, WITH_KSMD, async (ctx) => {
      const expected = await baselineVerdict(ctx);
      const run = await withKsmd(() => runWorkload(mode), AGGRESSIVE_KSMD);
      expect(run.merges?.mergedThroughout(), run.merges?.toString()).toBe(true);
      expect(run.verdict).toEqual(expected);
    });
  }
});
