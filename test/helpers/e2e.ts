import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { TestContext } from 'vitest';

/**
 * Tests that need root, KSM or a tool skip with a stated reason on machines
 * without them; with KSM_REQUIRE_E2E=1 (CI) such a skip is a failure instead.
 */
export function requireOrSkip(ctx: TestContext, missing: string | undefined): void {
  if (missing === undefined) return;
  if (process.env.KSM_REQUIRE_E2E === '1') {
    throw new Error(`KSM_REQUIRE_E2E=1 but this test cannot run: ${missing}`);
  }
  ctx.skip(missing);
}

/** Why KSM end-to-end tests cannot run here, or undefined when they can. */
export function ksmUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `KSM needs Linux (this is ${process.platform})`;
  if (!existsSync('/sys/kernel/mm/ksm/run')) return 'the kernel has no KSM (/sys/kernel/mm/ksm missing)';
  if (process.getuid?.() !== 0) return 'changing /sys/kernel/mm/ksm needs root';
  return undefined;
}

/** What the running kernel does, found by calls in a Python process (ctypes), apart
 * from the project's own code, so tests can check that code against the kernel. */
export interface ProbedKernel {
  /** prctl(PR_SET_MEMORY_MERGE, 1) succeeds. */
  prctl: boolean;
  /** The flag is still set in a program exec'd after it. */
  execSurvival: boolean;
  /** ioctl(PROCMAP_QUERY) on /proc/self/maps answers. */
  procmapQuery: boolean;
}

// PROCMAP_QUERY is _IOWR('f', 17, struct procmap_query), 104 bytes; prctl 67/68 are
// PR_SET/PR_GET_MEMORY_MERGE. The exec'd program reports the flag as its exit status.
const KERNEL_ORACLE = `
import ctypes, fcntl, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
anchor = ctypes.create_string_buffer(8)
query = bytearray(struct.pack('=9Q4I2Q', 104, 0, ctypes.addressof(anchor), *[0] * 12))
try:
    with open('/proc/self/maps', 'rb') as maps:
        fcntl.ioctl(maps.fileno(), (3 << 30) | (104 << 16) | (ord('f') << 8) | 17, query, True)
    procmap_query = True
except OSError:
    procmap_query = False
prctl = libc.prctl(67, 1, 0, 0, 0) == 0
survives = False
if prctl:
    child = os.fork()
    if child == 0:
        report = 'import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(68, 0, 0, 0, 0))'
        os.execve(sys.executable, [sys.executable, '-S', '-I', '-c', report], {})
    survives = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 1
print('{"prctl": %s, "execSurvival": %s, "procmapQuery": %s}' % tuple(str(x).lower() for x in (prctl, survives, procmap_query)))
`;

let probed: ProbedKernel | undefined;

/** The running kernel's answers (see ProbedKernel), asked once per test process. */
export function probedKernel(): ProbedKernel {
  probed ??= JSON.parse(execFileSync('python3', ['-S', '-I', '-c', KERNEL_ORACLE], { encoding: 'utf8', env: { PATH: process.env.PATH } })) as ProbedKernel;
  return probed;
}

/** Why prctl(PR_SET_MEMORY_MERGE) tests cannot run here: no KSM, no root, or the kernel refuses the call. */
export function prctlUnavailable(): string | undefined {
  const noKsm = ksmUnavailable();
  if (noKsm) return noKsm;
  return probedKernel().prctl ? undefined : `the kernel refuses prctl(PR_SET_MEMORY_MERGE) (${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()})`;
}
