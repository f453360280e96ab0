import { release } from 'node:os';

/** The running kernel's version, from uname (e.g. "6.18.44-fc"). */
export function kernelRelease(): string {
  return release();
}

/** Whether the running kernel is at least major.minor; false when the release cannot be parsed. */
export function kernelAtLeast(major: number, minor: number): boolean {
  const match = /^(\d+)\.(\d+)/.exec(kernelRelease());
  if (!match) return false;
  const [runningMajor, runningMinor] = [Number(match[1]), Number(match[2])];
  return runningMajor > major || (runningMajor === major && runningMinor >= minor);
}
