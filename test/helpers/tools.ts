import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'vitest';
import { requireOrSkip } from './e2e.js';

/**
 * Programs the tests use that a machine with only Node and build-essential lacks,
 * each with the Debian package that installs it. CI installs all of them (.ci/run);
 * docs/testing.md lists them for people.
 */
export const OPTIONAL_TOOLS: Readonly<Record<string, string>> = {
  'aarch64-linux-gnu-gcc': 'gcc-aarch64-linux-gnu',
  busybox: 'busybox-static',
  catatonit: 'catatonit',
  chromium: 'chromium',
  clang: 'clang',
  cmake: 'cmake',
  cpio: 'cpio',
  debootstrap: 'debootstrap',
  'mariadb': 'mariadb-client',
  'mariadb-admin': 'mariadb-client',
  'mariadb-check': 'mariadb-client',
  'mariadb-install-db': 'mariadb-server',
  mariadbd: 'mariadb-server',
  'musl-gcc': 'musl-tools',
  podman: 'podman',
  'podman-compose': 'podman-compose',
  prometheus: 'prometheus',
  'prometheus-node-exporter': 'prometheus-node-exporter',
  'qemu-system-x86_64': 'qemu-system-x86',
  'redis-cli': 'redis-tools',
  'redis-server': 'redis-server',
  runc: 'runc',
  sqlite3: 'sqlite3',
  strace: 'strace',
  supervisord: 'supervisor',
  systemctl: 'systemd',
  'systemd-analyze': 'systemd',
  'systemd-tmpfiles': 'systemd',
  valgrind: 'valgrind',
  xz: 'xz-utils',
};

/** Where an executable command lives on PATH, or undefined. Looked up in-process, so a
 * test can stub PATH and nothing depends on a shell being found. */
export function which(command: string, path = process.env.PATH ?? ''): string | undefined {
  if (command.includes('/')) return isExecutable(command) ? command : undefined;
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function packageOf(command: string, debianPackage: string | undefined): string {
  const known = debianPackage ?? OPTIONAL_TOOLS[command];
  if (known === undefined) throw new TypeError(`no Debian package known for ${command}: name it or add it to OPTIONAL_TOOLS`);
  return known;
}

/** Why a test needing `command` cannot run here (naming its Debian package), or undefined. */
export function toolMissing(command: string, debianPackage?: string): string | undefined {
  const pkg = packageOf(command, debianPackage);
  return which(command) ? undefined : `${command} is not installed (Debian package ${pkg})`;
}

/**
 * The test needs `command`: its absolute path, or the test skips naming the tool and its
 * Debian package (a failure under KSM_REQUIRE_E2E=1).
 */
export function requireTool(ctx: TestContext, command: string, debianPackage?: string): string {
  requireOrSkip(ctx, toolMissing(command, debianPackage));
  return which(command) ?? command;
}

/** The same for a file found by absolute path, such as another malloc's shared library. */
export function requireFile(ctx: TestContext, path: string, debianPackage: string): void {
  requireOrSkip(ctx, existsSync(path) ? undefined : `${path} is missing (Debian package ${debianPackage})`);
}
