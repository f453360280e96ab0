import { spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { withKsmd } from '../helpers/ksmd.js';
import {
  AGGRESSIVE_KSMD,
  filler,
  LIBRARY_MODES,
  MergeSamples,
  requireTools,
  seededRandom,
  serverEnv,
  startServer,
  stopServer,
  WITH_KSMD,
  type IntegrityMode,
} from './support.js';

// MariaDB under the library, with ksmd merging as fast as it can, takes inserts,
// updates, deletes and rollbacks across transactions; its tables must then check and
// checksum exactly as after the same workload without the library, both live and
// after a clean restart without the library (what reached the disk).

const TOOLS: Array<[string, string]> = [
  ['mariadbd', 'mariadb-server'],
  ['mariadb-install-db', 'mariadb-server'],
  ['mariadb', 'mariadb-client'],
  ['mariadb-check', 'mariadb-client'],
  ['mariadb-admin', 'mariadb-client'],
];
const PHASES = 6;
const TABLES = ['accounts', 'ledger', 'blobs'];

const work = mkdtempSync(join(tmpdir(), 'ksm-integrity-mariadb-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The same SQL on every run: schema, then phases of transactions. */
function workload(): string[] {
  const random = seededRandom(20261201);
  const phases = [
    `CREATE DATABASE ksm_integrity; USE ksm_integrity;
     CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(64) NOT NULL, balance BIGINT NOT NULL, note TEXT, KEY (owner)) ENGINE=InnoDB;
     CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, amount BIGINT NOT NULL, memo VARCHAR(200), KEY (account)) ENGINE=InnoDB;
     CREATE TABLE blobs (id INT PRIMARY KEY, body MEDIUMBLOB NOT NULL) ENGINE=InnoDB;`,
  ];
  for (let phase = 1; phase <= PHASES; phase++) {
    const sql = ['USE ksm_integrity;', 'START TRANSACTION;'];
    for (let batch = 0; batch < 10; batch++) {
      const rows = [];
      for (let i = 0; i < 200; i++) {
        const id = phase * 10_000 + batch * 200 + i;
        rows.push(`(${id}, 'owner-${id % 97}', ${1000 + random(100_000)}, '${filler(id, 200 + random(300))}')`);
      }
      sql.push(`INSERT INTO accounts VALUES ${rows.join(', ')};`);
    }
    sql.push('COMMIT;');
    for (let t = 0; t < 300; t++) {
      const from = (1 + random(phase)) * 10_000 + random(2000);
      const to = (1 + random(phase)) * 10_000 + random(2000);
      const amount = 1 + random(500);
      sql.push(
        'START TRANSACTION;',
        `UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from};`,
        `UPDATE accounts SET balance = balance + ${amount}, note = CONCAT(LEFT(note, 100), '+${t}') WHERE id = ${to};`,
        `INSERT INTO ledger (account, amount, memo) VALUES (${from}, ${-amount}, 'transfer ${phase}/${t}'), (${to}, ${amount}, '${filler(t, 120)}');`,
        t % 10 === 9 ? 'ROLLBACK;' : 'COMMIT;',
      );
    }
    sql.push('START TRANSACTION;');
    for (let b = 0; b < 40; b++) {
      const id = phase * 100 + b;
      sql.push(`INSERT INTO blobs VALUES (${id}, REPEAT('${filler(id, 64)}', ${256 + random(256)}));`);
    }
    for (let b = 0; b < 20; b++) {
      const id = (1 + random(phase)) * 100 + random(40);
      sql.push(`UPDATE blobs SET body = CONCAT(body, '${filler(b, 500)}') WHERE id = ${id};`);
    }
    sql.push('COMMIT;', 'START TRANSACTION;');
    sql.push(`DELETE FROM ledger WHERE MOD(id, 11) = ${phase};`);
    sql.push(`DELETE FROM accounts WHERE MOD(id, 13) = ${phase} AND balance < 30000;`);
    sql.push(`DELETE FROM blobs WHERE MOD(id, 7) = ${phase % 7};`);
    sql.push('COMMIT;');
    phases.push(sql.join('\n'));
  }
  return phases;
}

interface Instance {
  datadir: string;
  socket: string;
}

function client(instance: Instance, sql: string): string {
  const run = spawnSync('mariadb', ['--no-defaults', '-S', instance.socket, '-uroot', '--batch', '--skip-column-names'], { input: sql, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`mariadb client failed (${run.status}): ${run.stderr}`);
  return run.stdout;
}

function serverArgs(instance: Instance): string[] {
  return [
    '--no-defaults',
    `--datadir=${instance.datadir}`,
    `--socket=${instance.socket}`,
    `--pid-file=${join(instance.datadir, 'mariadbd.pid')}`,
    `--log-error=${join(instance.datadir, 'error.log')}`,
    '--skip-networking',
    '--user=root',
    '--innodb-buffer-pool-size=64M',
    '--innodb-log-file-size=8M',
    '--performance-schema=OFF',
    // Commits reach the log at once but are flushed to disk once a second: a clean shutdown still keeps them all.
    '--innodb-flush-log-at-trx-commit=2',
  ];
}

let template: string | undefined;

/** A fresh data directory: mariadb-install-db once per file, copied for every run. */
function freshInstance(name: string): Instance {
  if (template === undefined) {
    template = join(work, 'template');
    const install = spawnSync(
      'mariadb-install-db',
      ['--no-defaults', `--datadir=${template}`, '--user=root', '--skip-test-db', '--auth-root-authentication-method=normal', '--innodb-log-file-size=8M'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr}`);
  }
  const datadir = join(work, name);
  cpSync(template, datadir, { recursive: true });
  return { datadir, socket: join(work, `${name}.sock`) };
}

async function start(instance: Instance, mode: IntegrityMode): Promise<ChildProcess> {
  const alive = (): boolean => existsSync(instance.socket) && spawnSync('mariadb-admin', ['--no-defaults', '-S', instance.socket, '-uroot', 'ping'], { timeout: 10_000 }).status === 0;
  return startServer('mariadbd', serverArgs(instance), serverEnv(mode), alive, `mariadbd (${mode})`);
}

async function shutdown(instance: Instance, server: ChildProcess): Promise<void> {
  spawnSync('mariadb-admin', ['--no-defaults', '-S', instance.socket, '-uroot', 'shutdown'], { timeout: 60_000 });
  expect(await stopServer(server), 'mariadbd shut down cleanly').toBe(0);
}

interface Verdict {
  checksums: string;
  check: string;
  counts: string;
}

function verdict(instance: Instance): Verdict {
  const check = spawnSync('mariadb-check', ['--no-defaults', '-S', instance.socket, '-uroot', '--extended', '--databases', 'ksm_integrity'], { encoding: 'utf8', timeout: 120_000 });
  if (check.status !== 0) throw new Error(`mariadb-check failed (${check.status}): ${check.stdout}${check.stderr}`);
  return {
    checksums: client(instance, `CHECKSUM TABLE ${TABLES.map((table) => `ksm_integrity.${table}`).join(', ')} EXTENDED;`),
    check: check.stdout,
    counts: client(
      instance,
      'USE ksm_integrity; SELECT COUNT(*), SUM(balance) FROM accounts; SELECT COUNT(*), SUM(amount) FROM ledger; SELECT COUNT(*), SUM(LENGTH(body)) FROM blobs;',
    ),
  };
}

/** One run: the workload on a fresh instance in `mode`, the verdict live and after a restart without the library. */
async function runWorkload(mode: IntegrityMode): Promise<{ live: Verdict; restarted: Verdict; merges: MergeSamples | undefined }> {
  const instance = freshInstance(mode);
  const server = await start(instance, mode);
  let merges: MergeSamples | undefined;
  try {
    if (mode !== 'off') {
      merges = new MergeSamples(server.pid ?? 0);
      expect(await merges.waitMerged(), `mariadbd (${mode}) got memory merged before the writes`).toBe(true);
    }
    for (const sql of workload()) {
      client(instance, sql);
      merges?.take();
    }
    const live = verdict(instance);
    merges?.take();
    await shutdown(instance, server);
    const restarted = await start(instance, 'off');
    try {
      return { live, restarted: verdict(instance), merges };
    } finally {
      await shutdown(instance, restarted);
    }
  } finally {
    if (server.exitCode === null) await stopServer(server, 'SIGKILL');
  }
}

let baseline: Verdict | undefined;

async function baselineVerdict(ctx: TestContext): Promise<Verdict> {
  requireTools(ctx, TOOLS);
  if (baseline === undefined) {
    const run = await runWorkload('off');
    expect(run.restarted).toEqual(run.live);
    baseline = run.live;
  }
  return baseline;
}

describe('MariaDB keeps every write under merging', () => {
  it('the workload without the library checks clean', { timeout: 180_000 }, async (ctx) => {
    const verdict = await baselineVerdict(ctx);
    expect(verdict.check).toMatch(/ksm_integrity\.accounts\s+OK/);
    expect(verdict.check).not.toMatch(/error|corrupt|warning/i);
    const [accounts = '', ledger = ''] = verdict.counts.trim().split('\n');
    expect(Number(accounts.split('\t')[0])).toBeGreaterThan(5000);
    expect(Number(ledger.split('\t')[0])).toBeGreaterThan(1000);
  });

  for (const mode of LIBRARY_MODES) {
    it(`under the library (${mode}) with ksmd merging: CHECKSUM TABLE and mariadb-check match`, WITH_KSMD, async (ctx) => {
      const expected = await baselineVerdict(ctx);
      const run = await withKsmd(() => runWorkload(mode), AGGRESSIVE_KSMD);
      expect(run.merges?.mergedThroughout(), run.merges?.toString()).toBe(true);
      expect(run.live).toEqual(expected);
      expect(run.restarted).toEqual(expected);
    });
  }
});
