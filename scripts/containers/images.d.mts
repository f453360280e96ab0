// Types of images.mjs, for the TypeScript tests.
export const CACHE_DIR: string;
export const CONTAINERS_CONF: string;
export function podmanEnv(): NodeJS.ProcessEnv;
export function podmanUnavailable(): string | undefined;
export function onPath(tool: string): boolean;
export function podman(args: string[], options?: { input?: string; timeoutMs?: number; cwd?: string; allowFailure?: false }): string;
export function podman(
  args: string[],
  options: { input?: string; timeoutMs?: number; cwd?: string; allowFailure: true },
): { status: number | null; stdout: string; stderr: string };
export function debianSources(): { mirror: string; codename: string; sourcesList: string };
export function ensureBaseImage(): Promise<string>;
export function ensureTenantImage(): Promise<string>;
