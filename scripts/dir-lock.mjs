// A lock across processes (tests, benchmarks, other checkouts): a folder made with
// mkdir, which only one process can create, holding the pid of its owner. A holder
// that died gives the lock up.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Waits for the lock at `dir`, polling every `pollMs`; throws after `waitMs` while a live process holds it. */
export async function acquireDirLock(dir, { waitMs, pollMs }) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return;
    } catch {
      if (holderIsGone(dir)) rmSync(dir, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${dir} held for ${Math.round(waitMs / 60_000)} minutes`);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}

export function releaseDirLock(dir) {
  rmSync(dir, { recursive: true, force: true });
}

function holderIsGone(dir) {
  try {
    process.kill(Number(readFileSync(join(dir, 'pid'), 'utf8')), 0);
    return false;
  } catch (error) {
    if (error.code === 'ESRCH') return true;
    // No pid file yet: the holder is between mkdir and write, or died there.
    try {
      return Date.now() - statSync(dir).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
}
