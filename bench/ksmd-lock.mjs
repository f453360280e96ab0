// The lock test/helpers/ksmd.ts takes around every use of the host's ksmd, taken by
// the suites too, so a benchmark and a test never tune one ksmd at the same time.
import { acquireDirLock, releaseDirLock } from '../scripts/dir-lock.mjs';

const LOCK_DIR = '/tmp/ksm-preload-sysfs.lock';

/** Waits for the lock (a holder that died gives it up), at most `waitMinutes`. */
export async function acquireKsmdLock({ waitMinutes = 10 } = {}) {
  await acquireDirLock(LOCK_DIR, { waitMs: waitMinutes * 60_000, pollMs: 200 });
}

export function releaseKsmdLock() {
  releaseDirLock(LOCK_DIR);
}
