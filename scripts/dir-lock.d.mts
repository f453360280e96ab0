// Types of dir-lock.mjs, for the TypeScript tests.
export function acquireDirLock(dir: string, options: { waitMs: number; pollMs: number }): Promise<void>;
export function releaseDirLock(dir: string): void;
