import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KsmError } from '../../lib/core/errors.js';
import { allUserPids, cgroupPids, processName } from '../../lib/process/select.js';
import { exitedPid } from './fixture.js';

describe('process selection', () => {
  it('lists every user process but this one, and no kernel thread', () => {
    const pids = allUserPids();
    expect(pids).not.toContain(process.pid);
    expect(pids).toContain(process.ppid);
    const emptyCommandLines = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          return readFileSync(`/proc/${name}/cmdline`).length === 0;
        } catch {
          return false;
        }
      })
      .map(Number);
    for (const kernelThread of emptyCommandLines) expect(pids).not.toContain(kernelThread);
  });

  it('refuses a folder that is not a cgroup with the path in the message', () => {
    expect(() => cgroupPids('/no/such/cgroup')).toThrow(KsmError);
    expect(() => cgroupPids('/no/such/cgroup')).toThrow(/no\/such\/cgroup is not a cgroup/);
    expect(() => cgroupPids('')).toThrow(TypeError);
  });

  it('names a process by its comm, and nothing once it is gone', async () => {
    expect(processName(process.pid)).toBe(readFileSync('/proc/self/comm', 'utf8').trim());
    expect(processName(await exitedPid())).toBeUndefined();
  });
});
