import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'vitest';
import { ksmUnavailable, requireOrSkip } from '../helpers/e2e.js';
import { waitFor } from '../helpers/ksmd.js';
import { requireTool } from '../helpers/tools.js';
import { cleanEnv, libraryPath } from '../reliability/support/run.js';

/** A run without the library, and the library's two ways of opting in. */
export type IntegrityMode = 'off' | 'madvise' | 'auto';
export const LIBRARY_MODES: IntegrityMode[] = ['madvise', 'auto'];

/** ksmd as fast as it goes: many pages per wake-up, hardly a pause, so pages merge and unmerge under the writes. */
export const AGGRESSIVE_KSMD = { pages_to_scan: '20000', sleep_millisecs: '1' };

/** How long one server may take to get some memory merged: ksmd reaches a new process only after a round over every other mergeable one. */
export const MERGE_TIMEOUT_MS = 120_000;

/** Every test of this folder waits for the machine-wide KSM lock. */
export const WITH_KSMD = { timeout: 11 * 60_000 };

/** The server's environment: nothing of ours for `off`, else the library in that mode. */
export function serverEnv(mode: IntegrityMode, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  if (mode === 'off') return cleanEnv(extra);
  return cleanEnv({ LD_PRELOAD: libraryPath(), KSM_PRELOAD_MODE: mode, ...extra });
}

/** Skips (or fails under KSM_REQUIRE_E2E=1) without root, KSM or one of the tools; returns their paths. */
export function requireTools(ctx: TestContext, tools: Array<[command: string, debianPackage: string]>): string[] {
  requireOrSkip(ctx, ksmUnavailable());
  return tools.map(([command, debianPackage]) => requireTool(ctx, command, debianPackage));
}

export function mergingPages(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8'));
  } catch {
    return 0;
  }
}

/** The server's ksm_merging_pages, sampled while its workload runs: the proof that merging happened under the writes. */
export class MergeSamples {
  readonly samples: number[] = [];
  constructor(private readonly pid: number) {}

  /** Waits until some of the server's memory is merged; false on the deadline. */
  async waitMerged(timeoutMs = MERGE_TIMEOUT_MS): Promise<boolean> {
    const merged = await waitFor(() => mergingPages(this.pid) > 0, timeoutMs, 50);
    this.take();
    return merged;
  }

  take(): number {
    const pages = mergingPages(this.pid);
    this.samples.push(pages);
    return pages;
  }

  /** True when every sample, from before the first write to after the last, saw merged pages. */
  mergedThroughout(): boolean {
    return this.samples.length >= 3 && this.samples.every((pages) => pages > 0);
  }

  toString(): string {
    return `ksm_merging_pages of pid ${this.pid} during the workload: ${this.samples.join(', ')}`;
  }
}

/** A small deterministic generator (a 32-bit LCG), so every run writes the same data. */
export function seededRandom(seed: number): (limit: number) => number {
  let state = seed >>> 0;
  return (limit: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % limit;
  };
}

/** Text of `length` characters, varied by `n` but with long repeats, as real rows often are. */
export function filler(n: number, length: number): string {
  const word = `row${n % 1000}-${'abcdefghij'.slice(0, 1 + (n % 10))}|`;
  return word.repeat(Math.ceil(length / word.length)).slice(0, length);
}

/** Starts a server and waits until `ready()` holds; kills it on failure. */
export async function startServer(command: string, args: string[], env: NodeJS.ProcessEnv, ready: () => boolean, what: string): Promise<ChildProcess> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const up = await waitFor(() => child.exitCode === null && ready(), 30_000, 50);
  if (!up) {
    child.kill('SIGKILL');
    throw new Error(`${what} did not start (exit ${child.exitCode}): ${stderr}`);
  }
  return child;
}

/** Ends a server with `signal` and waits for its exit code. */
export function stopServer(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const exit = exited(child);
  child.kill(signal);
  return exit;
}

/** Waits for the process to exit by itself (SIGKILL after 30 s); resolves with its exit code. */
export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
