import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { identifyCgroup } from '../../lib/process/cgroups.js';
import { cgroupOf } from '../../lib/process/top.js';
import { requireOrSkip } from '../helpers/e2e.js';
import { toolMissing } from '../helpers/tools.js';

// Real podman containers, no image needed: a rootfs holding only a static busybox.
const work = mkdtempSync(join(tmpdir(), 'ksm-podman-names-'));
const suffix = `${process.pid}-${Date.now()}`;
const names = { alone: `ksm-names-${suffix}`, pod: `ksm-names-pod-${suffix}`, member: `ksm-names-member-${suffix}` };
const env = { ...process.env, CONTAINERS_CONF: join(work, 'containers.conf') };

function podman(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const run = spawnSync('podman', args, { env, encoding: 'utf8', timeout: 120_000 });
  return { code: run.status, stdout: run.stdout?.trim() ?? '', stderr: run.stderr ?? '' };
}

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'podman containers need root here';
  return toolMissing('podman') ?? toolMissing('runc') ?? toolMissing('busybox');
}

afterAll(() => {
  if (unavailable() === undefined) {
    podman('rm', '-f', '-t', '0', names.alone, names.member);
    podman('pod', 'rm', '-f', '-t', '0', names.pod);
  }
  rmSync(work, { recursive: true, force: true });
});

describe('identifyCgroup with real podman containers', () => {
  it('names a container and a pod member by the names podman gave them', { timeout: 180_000 }, (ctx) => {
    requireOrSkip(ctx, unavailable());
    // runc and cgroupfs: what this kind of host needs (PID 1 is not systemd, the layout is hybrid).
    writeFileSync(env.CONTAINERS_CONF, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n');
    const rootfs = join(work, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync(spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim(), join(rootfs, 'bin/busybox'));

    const alone = podman('run', '-d', '--name', names.alone, '--rootfs', rootfs, '/bin/busybox', 'sleep', '300');
    expect(alone.code, alone.stderr).toBe(0);
    const pod = podman('pod', 'create', '--name', names.pod);
    expect(pod.code, pod.stderr).toBe(0);
    const member = podman('run', '-d', '--pod', names.pod, '--name', names.member, '--rootfs', rootfs, '/bin/busybox', 'sleep', '300');
    expect(member.code, member.stderr).toBe(0);

    const pidOf = (name: string): number => Number(podman('inspect', '-f', '{{.State.Pid}}', name).stdout);
    const aloneIdentity = identifyCgroup(cgroupOf(pidOf(names.alone)));
    expect(aloneIdentity).toMatchObject({ engine: 'podman', containerId: alone.stdout, container: names.alone, name: names.alone });
    expect(aloneIdentity.pod).toBeUndefined();
    expect(identifyCgroup(cgroupOf(pidOf(names.member)))).toMatchObject({ engine: 'podman', containerId: member.stdout, container: names.member, pod: names.pod });
  });
});
