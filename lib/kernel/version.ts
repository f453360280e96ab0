import { release } from 'node:os';

/** The running kernel's release, from uname (e.g. "6.18.44-fc"): for display and file
 * names only; what the kernel can do is probed (kernelFeatures()), never read from it. */
export function kernelRelease(): string {
  return release();
}
