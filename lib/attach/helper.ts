// Runs the ksm-attach helper (native/attach) and turns its one line of JSON into a
// result or a KsmError whose message names the fix.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { KsmError, notSupportedError, type KsmErrorCode } from '../core/errors.js';
import { attachHelper } from '../core/paths.js';

/** What the helper prints when it succeeds. */
export interface HelperReport {
  action: 'attach' | 'detach';
  pid: number;
  tid: number;
  mode: 'prctl' | 'madvise';
  fellBack: boolean;
  syscalls: number;
  mappings: number;
  failedMappings: number;
  firstError: string | null;
  bytes: number;
  signalsPassed: number;
  interruptedSyscall: number;
  stoppedMicroseconds: number;
}

interface HelperFailure {
  error: { code: string; step: string; message: string };
}

/** A request to the helper. */
export interface HelperRequest {
  action: 'attach' | 'detach';
  pid: number;
  mode: 'auto' | 'prctl' | 'madvise';
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

function ptraceScope(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** The words for a PTRACE_SEIZE refused with EPERM: who may trace what, and how to allow it. */
export function permissionAdvice(helperPath: string, scope: number | undefined = ptraceScope()): string {
  const grant = `run as root, or let the helper trace (sudo setcap cap_sys_ptrace+ep ${helperPath})`;
  switch (scope) {
    case 1:
      return `Yama's ptrace_scope is 1 (only a parent may trace its children): ${grant}, or allow it for all with \`echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope\``;
    case 2:
      return `Yama's ptrace_scope is 2 (admin only): ${grant}; or \`echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope\``;
    case 3:
      return 'Yama\'s ptrace_scope is 3: ptrace is off until the next boot (set kernel.yama.ptrace_scope lower at boot)';
    default:
      return `the process belongs to another user, is not dumpable (setuid, or PR_SET_DUMPABLE 0), or a security module refuses: ${grant}`;
  }
}

function failure(request: HelperRequest, helperPath: string, report: HelperFailure['error']): KsmError {
  const operation = request.action === 'attach' ? 'attachProcess' : 'detachProcess';
  const code: KsmErrorCode = report.code in constants.errno ? (report.code as KsmErrorCode) : 'EIO';
  const syscall = report.step === 'seize' || report.step === 'interrupt' || report.step === 'singlestep' ? 'ptrace' : report.step;
  let detail = `process ${request.pid}: ${report.message}`;
  if (report.step === 'seize' && code === 'EPERM') detail = `process ${request.pid}: ptrace refused: ${permissionAdvice(helperPath)}`;
  if (report.step === 'prctl' && code === 'EINVAL') detail += ': this kernel has no PR_SET_MEMORY_MERGE (Linux 6.4+); use --mode madvise';
  if (report.step === 'madvise' && code === 'EINVAL') detail += ': the kernel was built without KSM (CONFIG_KSM)';
  return new KsmError(operation, code, detail, { syscall });
}

/** Runs the helper once; never kills it hard, so the target always gets its registers back. */
export function runHelper(request: HelperRequest): Promise<HelperReport> {
  const helper = attachHelper();
  const operation = request.action === 'attach' ? 'attachProcess' : 'detachProcess';
  if (helper.path === undefined) return Promise.reject(notSupportedError(operation, helper.reason));
  const helperPath = helper.path;
  const args = [request.action, String(request.pid), '--mode', request.mode, '--timeout-ms', String(request.timeoutMs)];
  return new Promise((resolve, reject) => {
    const child = spawn(helperPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // SIGTERM makes the helper give up at once, restore the thread and detach.
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    request.signal?.addEventListener('abort', stop, { once: true });
    child.on('error', (error) => {
      request.signal?.removeEventListener('abort', stop);
      reject(KsmError.fromNode(operation, error, `cannot run ${helperPath}: ${error.message}`));
    });
    child.on('close', (code) => {
      request.signal?.removeEventListener('abort', stop);
      let parsed: HelperReport | HelperFailure | undefined;
      try {
        parsed = JSON.parse(stdout) as HelperReport | HelperFailure;
      } catch {
        parsed = undefined;
      }
      if (parsed && 'error' in parsed) return reject(failure(request, helperPath, parsed.error));
      if (parsed && code === 0) return resolve(parsed);
      reject(new KsmError(operation, 'EIO', `${helperPath} exited with ${code}: ${stderr.trim() || stdout.trim() || 'no output'}`));
    });
  });
}
