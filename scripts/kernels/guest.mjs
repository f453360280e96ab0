// Boots one kernel under QEMU (TCG: nested KVM fails on this machine kind) with the
// host's root as the guest's read-only lower layer, runs a shell job in it and returns
// the job's exit status with the whole serial console.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const EXIT_MARKER = /^KSM-GUEST-EXIT (\d+)\s*$/m;

/** The QEMU processes still running, for the runner to stop when it is interrupted. */
export const runningGuests = new Set();

/**
 * Runs `job` (a /bin/sh script) in a guest booted from `kernel` ({ vmlinuz, initramfs }).
 * `outDir` is the one host folder the guest can write; the job sees it as /ksm-guest-out.
 * Resolves to { status, console, seconds, reason? }: status is null when the guest never
 * reported one (it did not boot, crashed, or ran out of time), with the reason.
 */
export function runInGuest(kernel, job, { outDir, timeoutMs, memory = '4G', cpus = 2, onConsole = () => {} }) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'job.sh'), job);
  const args = [
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', String(cpus), '-m', memory,
    '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', kernel.vmlinuz, '-initrd', kernel.initramfs,
    '-append', 'console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init',
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${outDir},mount_tag=ksmout,security_model=none,multidevs=remap`,
  ];
  const started = Date.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  runningGuests.add(qemu);
  qemu.once('exit', () => runningGuests.delete(qemu));
  let output = '';
  const collect = (text) => {
    output += text;
    onConsole(text);
  };
  for (const stream of [qemu.stdout, qemu.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', collect);
  }
  return new Promise((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      qemu.kill('SIGKILL');
    }, timeoutMs);
    const done = (reason) => {
      clearTimeout(timer);
      const seconds = (Date.now() - started) / 1000;
      const statusFile = join(outDir, 'status');
      const fromFile = existsSync(statusFile) ? readFileSync(statusFile, 'utf8').trim() : '';
      const fromConsole = EXIT_MARKER.exec(output)?.[1];
      const reported = /^\d+$/.test(fromFile) ? fromFile : fromConsole;
      const status = reported === undefined ? null : Number(reported);
      resolve({ status, console: output, seconds, ...(status === null ? { reason: timedOut ? `no exit status within ${timeoutMs / 1000} s` : reason } : {}) });
    };
    qemu.once('error', (error) => done(`qemu-system-x86_64 did not start: ${error.message}`));
    qemu.once('exit', (code, signal) => done(`the guest stopped without reporting an exit status (qemu ${signal ?? `exit ${code}`})`));
  });
}
