// The lock test/helpers/ksmd.ts takes around every use of the host's ksmd, taken by
// the suites too, so a benchmark and a test never tune one ksmd at the same time.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';

const LOCK_DIR = '/tmp/ksm-preload-sysfs.lock';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for the lock (a holder that died gives it up), at most `waitMinutes`. */
export async function acquireKsmdLock({ waitMinutes = 10 } = {}) {
  const deadline = Date.now() + waitMinutes * 60_000;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(`${LOCK_DIR}/pid`, String(process.pid));
      return;
    } catch {
      if (lockHolderIsGone()) rmSync(LOCK_DIR, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`${LOCK_DIR} held for ${waitMinutes} minutes`);
      await sleep(200);
    }
  }
}

export function releaseKsmdLock() {
  rmSync(LOCK_DIR, { recursive: true, force: true });
}

function lockHolderIsGone() {
  try {
    process.kill(Number(readFileSync(`${LOCK_DIR}/pid`, 'utf8')), 0);
    return false;
  } catch (error) {
    if (error.code === 'ESRCH') return true;
    // No pid file yet: the holder is between mkdir and write, or died there.
    try {
      return Date.now() - statSync(LOCK_DIR).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
}
