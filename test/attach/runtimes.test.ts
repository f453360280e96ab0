// Real runtimes attached while they run: python3 and node (two identical copies
// each, merged by ksmd, their data hashed before and after), and MariaDB taking
// inserts while it is attached and detached over and over.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachProcess, detachProcess } from '../../lib/attach/attach.js';
import { WITH_KSMD } from '../cli/harness.js';
import { prctlUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { toolMissing } from '../helpers/tools.js';
import { waitFor, withKsmd } from '../helpers/ksmd.js';
import { coverage, mergingPages } from './merging.js';
import { attachUnavailable, removeFixture, sleep, startProgram, stop, type Started } from './targets.js';

const work = mkdtempSync(join(tmpdir(), 'ksm-attach-runtimes-'));
afterAll(() => {
  removeFixture();
  rmSync(work, { recursive: true, force: true });
});

const PYTHON = `
import hashlib, sys
table = {i: ('value-%d' % i) * 8 for i in range(100000)}
blobs = [bytearray(bytes([i % 7]) * 262144) for i in range(64)]
def digest():
    h = hashlib.sha256()
    for i in range(100000): h.update(table[i].encode())
    for blob in blobs: h.update(blob)
    return h.hexdigest()
print('ready', digest(), flush=True)
for line in sys.stdin:
    print('digest', digest(), flush=True)
`;

const NODE = `
const { createHash } = require('node:crypto');
const table = new Map();
for (let i = 0; i < 100000; i++) table.set(i, ('value-' + i).repeat(8));
const blobs = Array.from({ length: 64 }, (_, i) => Buffer.alloc(262144, i % 7));
function digest() {
  const h = createHash('sha256');
  for (let i = 0; i < 100000; i++) h.update(table.get(i));
  for (const blob of blobs) h.update(blob);
  return h.digest('hex');
}
console.log('ready', digest());
process.stdin.on('data', () => console.log('digest', digest()));
`;

/** Asks the program for its digest again and waits for the answer. */
async function askDigest(program: Started): Promise<string> {
  const seen = program.output().split('\n').filter((line) => line.startsWith('digest ')).length;
  program.child.stdin?.write('again\n');
  for (let i = 0; i < 300; i++) {
    const lines = program.output().split('\n').filter((line) => line.startsWith('digest '));
    if (lines.length > seen) return lines[seen]?.split(' ')[1] ?? '';
    await sleep(100);
  }
  throw new Error('no digest in 30 s');
}

const readyDigest = (program: Started): string => /ready ([0-9a-f]{64})/.exec(program.output())?.[1] ?? '';

describe.each([
  ['python3', '/usr/bin/python3', ['-c', PYTHON]],
  ['node', process.execPath, ['-e', NODE]],
] as const)('%s', (name, command, args) => {
  it(
    'two identical copies, attached, are fully covered, merge under ksmd, and hash their data as before; detach undoes it',
    async (ctx) => {
      requireOrSkip(ctx, attachUnavailable() ?? prctlUnavailable());
      const copies: Started[] = [];
      try {
        copies.push(await startProgram(command, [...args], /ready [0-9a-f]{64}/));
        copies.push(await startProgram(command, [...args], /ready [0-9a-f]{64}/));
        const digests = copies.map(readyDigest);
        expect(digests[0]).toBe(digests[1]);
        const pids = copies.map((copy) => copy.pid);
        expect(pids.map(coverage)).toEqual([0, 0]);
        await withKsmd(async () => {
          for (const pid of pids) expect((await attachProcess(pid)).mode).toBe('prctl');
          for (const pid of pids) expect(coverage(pid)).toBeGreaterThan(0.99);
          // The 64 blobs of 256 KiB are 4096 pages in both copies; a blob need not
          // start on a page boundary, so a few of its pages differ.
          await waitFor(() => pids.every((pid) => mergingPages(pid) > 3500), 120_000);
          for (const pid of pids) expect(mergingPages(pid)).toBeGreaterThan(3500);
          for (const copy of copies) expect(await askDigest(copy)).toBe(digests[0]);
          for (const pid of pids) await detachProcess(pid);
          for (const pid of pids) expect(coverage(pid)).toBe(0);
        });
        for (const copy of copies) expect(await askDigest(copy)).toBe(digests[0]);
        ctx.annotate(`${name}: merged and unmerged, data unchanged`);
      } finally {
        await stop(...copies);
      }
    },
    WITH_KSMD.timeout,
  );
});

// --- MariaDB: a private server on a socket in a temporary directory ---

function mariadbMissing(): string | undefined {
  return toolMissing('mariadbd') ?? toolMissing('mariadb-install-db') ?? toolMissing('mariadb') ?? toolMissing('mariadb-admin');
}

function sql(socket: string, text: string): string {
  const run = spawnSync('mariadb', ['--no-defaults', '-S', socket, '-uroot', '--batch', '--skip-column-names'], { input: text, encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`mariadb failed (${run.status}): ${run.stderr}`);
  return run.stdout.trim();
}

async function startMariadb(): Promise<{ server: Started; socket: string }> {
  const datadir = join(work, 'mariadb');
  const install = spawnSync(
    'mariadb-install-db',
    ['--no-defaults', `--datadir=${datadir}`, '--user=root', '--skip-test-db', '--auth-root-authentication-method=normal', '--innodb-log-file-size=8M'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr}`);
  const socket = join(work, 'mariadb.sock');
  const server = await startProgram(
    '/usr/sbin/mariadbd',
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--pid-file=${join(work, 'mariadbd.pid')}`,
      '--skip-networking',
      '--user=root',
      '--innodb-buffer-pool-size=64M',
      '--innodb-log-file-size=8M',
      '--innodb-flush-log-at-trx-commit=2',
      '--performance-schema=OFF',
    ],
    /ready for connections/,
  );
  return { server, socket };
}

const BATCH = 2000;
const CYCLES = 40;

describe('mariadbd under load', () => {
  it(
    'takes every insert, checks clean and merges while it is attached and detached over and over',
    async (ctx) => {
      requireOrSkip(ctx, attachUnavailable() ?? prctlUnavailable() ?? mariadbMissing());
      const { server, socket } = await startMariadb();
      try {
        sql(
          socket,
          `CREATE DATABASE ka; USE ka;
           CREATE TABLE t (id INT PRIMARY KEY, v VARBINARY(255) NOT NULL, h BINARY(32) NOT NULL) ENGINE=InnoDB;
           DELIMITER //
           CREATE PROCEDURE fill(first INT, n INT) BEGIN
             DECLARE i INT DEFAULT first;
             WHILE i < first + n DO
               INSERT INTO t VALUES (i, REPEAT(MD5(i), 4), MD5(REPEAT(MD5(i), 4)));
               IF i % 500 = 0 THEN SELECT COUNT(*) INTO @seen FROM t; END IF;
               SET i = i + 1;
             END WHILE;
           END//
           DELIMITER ;`,
        );
        let rows = 0;
        await withKsmd(async () => {
          // Batches of inserts, one client after another, for as long as the cycles last.
          let cycling = true;
          const load = (async () => {
            while (cycling) {
              const batch = spawn('mariadb', ['--no-defaults', '-S', socket, '-uroot', 'ka', '-e', `CALL fill(${rows}, ${BATCH})`], { stdio: 'ignore' });
              const code = await new Promise<number | null>((resolve) => batch.once('close', resolve));
              if (code !== 0) throw new Error(`a batch of inserts failed with ${code}`);
              rows += BATCH;
            }
          })();
          for (let cycle = 0; cycle < CYCLES; cycle++) {
            const mode = cycle % 2 === 0 ? 'prctl' : 'madvise';
            await attachProcess(server.pid, { mode });
            await sleep(20);
            await detachProcess(server.pid, { mode });
          }
          cycling = false;
          await load;
          // Attached for good now: ksmd merges the server's duplicate pages.
          await attachProcess(server.pid);
          await waitFor(() => mergingPages(server.pid) > 0, 60_000);
          expect(mergingPages(server.pid)).toBeGreaterThan(0);
        });
        ctx.annotate(`${CYCLES} attach/detach cycles during ${rows} inserts`);
        expect(rows).toBeGreaterThan(BATCH);
        expect(sql(socket, 'CHECK TABLE ka.t EXTENDED;')).toMatch(/status\s+OK$/);
        expect(sql(socket, 'SELECT COUNT(*), SUM(v = REPEAT(MD5(id), 4) AND h = MD5(v)) FROM ka.t;')).toBe(`${rows}\t${rows}`);
        await detachProcess(server.pid);
        spawnSync('mariadb-admin', ['--no-defaults', '-S', socket, '-uroot', 'shutdown'], { timeout: 60_000 });
        expect((await server.exited).code).toBe(0);
      } finally {
        await stop(server);
      }
    },
    WITH_KSMD.timeout,
  );
});
