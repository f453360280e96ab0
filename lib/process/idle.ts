import { readFileSync } from 'node:fs';

/** CPU time (user + system, in clock ticks) the processes have used; gone processes count 0. */
function cpuTicks(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name, which may itself hold spaces and parentheses.
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // An exited process uses no more CPU.
    }
  }
  return ticks;
}

/**
 * Resolves once the processes have used at most one clock tick of CPU over
 * `intervalMs`, or when `timeoutMs` has passed: a program that has just started is
 * still building its data (and collecting garbage), which changes its memory and
 * slows whatever reads it. Resolves to whether they went idle.
 */
export async function waitUntilIdle(pids: readonly number[], { timeoutMs = 5000, intervalMs = 300 } = {}): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let last = cpuTicks(pids);
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    const now = cpuTicks(pids);
    if (now - last <= 1) return true;
    last = now;
  }
  return false;
}
