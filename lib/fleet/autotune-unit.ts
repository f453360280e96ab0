// The systemd unit that runs `ksm autotune`, and writing it where systemd looks.
// deploy/systemd/ksm-autotune.service in the repository is this text with no options.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { KsmError } from '../core/errors.js';

export const AUTOTUNE_UNIT_NAME = 'ksm-autotune.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';

/** Arguments that go after `ksm autotune` in ExecStart: plain words only, nothing systemd would expand. */
const PLAIN_ARGUMENT = /^[A-Za-z0-9._/=:,+-]+$/;

/** The unit's text; `args` (such as `--max-cpu 10`) are appended to ExecStart. */
export function autotuneUnitText(args: readonly string[] = []): string {
  for (const arg of args) {
    if (!PLAIN_ARGUMENT.test(arg)) throw new RangeError(`argument ${JSON.stringify(arg)} cannot go into ExecStart: use letters, digits and ._/=:,+- only`);
  }
  return `# Written by \`ksm autotune --install\` (ksm-preload). Enable with:
#   systemctl daemon-reload && systemctl enable --now ksm-autotune
[Unit]
Description=ksm-preload autotune: run and pace ksmd while it saves memory
ConditionPathExists=/sys/kernel/mm/ksm/run
After=local-fs.target

[Service]
Type=simple
ExecStart=/usr/bin/env ksm autotune${args.map((arg) => ` ${arg}`).join('')}
# autotune puts every knob back on SIGTERM before it exits.
KillSignal=SIGTERM
TimeoutStopSec=30s
Restart=on-failure
RestartSec=10s
# Decisions for the dashboard go to /run/ksm-preload/autotune.jsonl.
RuntimeDirectory=ksm-preload
RuntimeDirectoryPreserve=yes
# Hardening. /sys stays writable: ProtectKernelTunables= would make
# /sys/kernel/mm/ksm read-only, and writing its knobs is the whole job.
ProtectSystem=strict
ReadWritePaths=/sys/kernel/mm/ksm
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
NoNewPrivileges=yes
SystemCallArchitectures=native
# Root owns the knobs; reading other users' /proc/PID/smaps and ksm_stat takes
# CAP_SYS_PTRACE. Node's JIT needs writable code pages: no MemoryDenyWriteExecute=.
CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
`;
}

/**
 * Writes the unit to `dir` (default /etc/systemd/system) under a temporary name and
 * renames it into place, so systemd never reads half a file. Returns the path.
 */
export function installAutotuneUnit(dir: string = DEFAULT_UNIT_DIR, args: readonly string[] = []): { file: string; text: string } {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('installAutotuneUnit: the unit folder must be a non-empty string');
  if (!isAbsolute(dir)) throw new RangeError(`installAutotuneUnit: the unit folder must be an absolute path, got ${JSON.stringify(dir.slice(0, 200))}`);
  const text = autotuneUnitText(args);
  const file = join(dir, AUTOTUNE_UNIT_NAME);
  const temporary = join(dir, `.${AUTOTUNE_UNIT_NAME}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, text, { mode: 0o644 });
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw KsmError.fromNode('installAutotuneUnit', error, `cannot write ${file}: ${(error as Error).message}`);
  }
  return { file, text };
}
