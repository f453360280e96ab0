// Inside a container: /sys is read-only and CAP_SYS_ADMIN is gone. `ksm doctor` must
// say what works there and what the host has to do; `ksm run` must mark a program
// as an unprivileged user, and the marked memory must merge across containers.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBaseImage, podman, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { withKsmd } from '../helpers/ksmd.js';
import {
  NODE_IN_CONTAINER,
  PACKAGE_IN_CONTAINER,
  WORKER,
  expectMarked,
  expectMergedAcross,
  packageMounts,
  removeContainers,
  requireContainers,
  uniqueName,
} from './support.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

const KSM = [NODE_IN_CONTAINER, `${PACKAGE_IN_CONTAINER}/bin/ksm.js`];
/** Nobody, with every capability dropped: the least a container can be. */
const UNPRIVILEGED = ['--user', '65534:65534', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];

let base = '';
const containers: string[] = [];

beforeAll(async () => {
  if (podmanUnavailable() !== undefined) return;
  base = await ensureBaseImage();
}, 15 * 60_000);

afterAll(() => removeContainers(containers));

describe('ksm inside a podman container', () => {
  it('ksm doctor says what works inside and what the host must do', async (ctx) => {
    requireContainers(ctx);
    for (const user of [[], UNPRIVILEGED]) {
      // ksmd runs during the check, so its line is deterministic; the human form names the host's command.
      const output = await withKsmd(async () => podman(['run', '--rm', ...user, ...packageMounts(), base, ...KSM, 'doctor', '--json']));
      const checks: Check[] = JSON.parse(output);
      const byName = Object.fromEntries(checks.map((check) => [check.name, check]));
      expect(byName.container).toMatchObject({ status: 'warn', detail: expect.stringMatching(/podman/), fix: expect.stringMatching(/on the host/) });
      expect(byName['sysfs writable']).toMatchObject({ status: 'warn', detail: expect.stringMatching(/read-only/), fix: expect.stringMatching(/host/) });
      expect(byName.ksmd?.status).toBe('ok');
      expect(byName.prctl?.status).toBe('ok');
      expect(byName['exec survival']?.status).toBe('ok');
      expect(byName['preload library']?.status).toBe('ok');
      expect(byName.launcher?.status).toBe('ok');
      expect(checks.filter((check) => check.status === 'fail')).toEqual([]);
      const human = podman(['run', '--rm', ...user, ...packageMounts(), base, ...KSM, 'doctor'], { allowFailure: true });
      expect(human.status).toBe(0);
      expect(human.stdout).toMatch(/ksm enable/);
    }
    // With ksmd stopped, the fix is the host's to make.
    const stopped = await withKsmd(async () => {
      writeFileSync('/sys/kernel/mm/ksm/run', '0');
      return podman(['run', '--rm', ...UNPRIVILEGED, ...packageMounts(), base, ...KSM, 'doctor', '--json']);
    });
    const ksmd = (JSON.parse(stopped) as Check[]).find((check) => check.name === 'ksmd');
    expect(ksmd).toMatchObject({ status: 'warn', fix: expect.stringMatching(/^on the host: sudo ksm enable/) });
  }, 12 * 60_000);

  it('ksm enable inside fails with a KsmError naming the read-only /sys, exit code non-zero', async (ctx) => {
    requireContainers(ctx);
    const result = podman(['run', '--rm', ...packageMounts(), base, ...KSM, 'enable'], { allowFailure: true });
    expect(result.status).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/read-only|EROFS/i);
  });

  for (const mode of ['prctl', 'madvise'] as const) {
    it(`ksm run --mode ${mode} marks a program as nobody without capabilities, and it merges across containers`, async (ctx) => {
      requireContainers(ctx);
      const names = [uniqueName(`run-${mode}-a`), uniqueName(`run-${mode}-b`)];
      containers.push(...names);
      for (const name of names) {
        podman(['run', '-d', '--name', name, ...UNPRIVILEGED, ...packageMounts(), base, ...KSM, 'run', '--mode', mode, '--', ...WORKER]);
      }
      const pids = [];
      for (const name of names) pids.push(await expectMarked(name, mode));
      await expectMergedAcross(pids);
    }, 12 * 60_000);
  }
});
