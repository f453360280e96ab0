// Debian kernels for the QEMU matrix: the newest package of each series, its vmlinuz,
// and an initramfs carrying busybox, the modules the guest needs and the init script.
// Everything is cached under build/kernels/<release>/; a complete entry is reused.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const cacheRoot = join(here, '..', '..', 'build', 'kernels');

/** The kernel series of the matrix, as package-name patterns (generic images: the cloud ones lack 9p). */
export const SERIES = [
  { name: '6.1', pattern: /^linux-image-(6\.1\.0-\d+-amd64)$/ },
  { name: '6.12', pattern: /^linux-image-(6\.12\.\d+\+deb12-amd64)$/ },
];

/** Modules the guest loads, with their dependencies found by modinfo; built-in ones are skipped. */
const WANTED_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

function run(command, args, options = {}) {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** The newest package of a series that apt knows, and the kernel release it installs. */
export function newestPackage(series) {
  const names = run('apt-cache', ['pkgnames', 'linux-image-']).split('\n').filter((name) => series.pattern.test(name));
  if (names.length === 0) throw new Error(`apt-cache knows no package matching ${series.pattern} (run apt-get update)`);
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const name = names.at(-1);
  return { name, release: series.pattern.exec(name)[1] };
}

/** Module name → path of its .ko or .ko.xz file, for a whole extracted module tree. */
function indexModules(dir, index = new Map()) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) indexModules(path, index);
    else if (/\.ko(\.xz|\.zst)?$/.test(entry.name)) index.set(entry.name.replace(/\.ko(\.xz|\.zst)?$/, '').replaceAll('-', '_'), path);
  }
  return index;
}

/** The wanted modules and their dependencies, dependencies first, as insmod needs them. */
function moduleLoadOrder(index) {
  const order = [];
  const visit = (name) => {
    const key = name.replaceAll('-', '_');
    if (order.includes(key)) return;
    const path = index.get(key);
    if (!path) return; // built into this kernel
    const depends = run('modinfo', ['-F', 'depends', path]).trim();
    for (const dependency of depends ? depends.split(',') : []) visit(dependency);
    order.push(key);
  };
  for (const name of WANTED_MODULES) visit(name);
  return order;
}

/** Whether an ELF file asks for a program interpreter (PT_INTERP): a dynamic executable does. */
function hasInterpreter(path) {
  const elf = readFileSync(path);
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const [entrySize, count] = [elf.readUInt16LE(0x36), elf.readUInt16LE(0x38)];
  for (let i = 0; i < count; i++) if (elf.readUInt32LE(phoff + i * entrySize) === 3) return true;
  return false;
}

/** The static busybox the initramfs runs on (a dynamic one would need the host's libc). */
function staticBusybox() {
  const busybox = '/bin/busybox';
  if (!existsSync(busybox) || hasInterpreter(busybox)) throw new Error(`${busybox} must be the static busybox (apt-get install busybox-static)`);
  return busybox;
}

/** Writes the cpio archive of a staging folder, gzip-compressed. */
function packCpio(stage, out) {
  const files = run('find', ['.', '-mindepth', '1'], { cwd: stage }).trim().split('\n').join('\n');
  const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: stage, input: `${files}\n`, maxBuffer: 1 << 30 });
  writeFileSync(out, execFileSync('gzip', ['-1', '-c'], { input: cpio, maxBuffer: 1 << 30 }));
}

/**
 * Returns { release, vmlinuz, initramfs } for a series, downloading and building what the
 * cache lacks. The initramfs is rebuilt whenever guest-init.sh is newer than it.
 */
export function prepareKernel(series, log = () => {}) {
  const { name, release } = newestPackage(series);
  const dir = join(cacheRoot, release);
  const vmlinuz = join(dir, 'vmlinuz');
  const moduleDir = join(dir, 'modules');
  const initramfs = join(dir, 'initramfs.cpio.gz');
  mkdirSync(dir, { recursive: true });

  if (!existsSync(vmlinuz) || !existsSync(join(moduleDir, 'load-order'))) {
    log(`downloading ${name}`);
    const work = mkdtempSync(join(cacheRoot, `.${release}-`));
    try {
      run('apt-get', ['download', '-q', name], { cwd: work });
      const deb = readdirSync(work).find((file) => file.endsWith('.deb'));
      const root = join(work, 'root');
      run('dpkg-deb', ['-x', join(work, deb), root]);
      const index = indexModules(join(root, 'lib', 'modules', release));
      rmSync(moduleDir, { recursive: true, force: true });
      mkdirSync(moduleDir);
      const order = moduleLoadOrder(index);
      for (const module of order) {
        const source = index.get(module);
        const target = join(moduleDir, `${module}.ko`);
        // insmod in busybox cannot read compressed modules.
        if (source.endsWith('.xz')) writeFileSync(target, execFileSync('xz', ['-dc', source], { maxBuffer: 1 << 28 }));
        else if (source.endsWith('.zst')) writeFileSync(target, execFileSync('zstd', ['-dc', source], { maxBuffer: 1 << 28 }));
        else copyFileSync(source, target);
      }
      writeFileSync(join(moduleDir, 'load-order'), `${order.join('\n')}\n`);
      copyFileSync(join(root, 'boot', `vmlinuz-${release}`), `${vmlinuz}.part`);
      renameSync(`${vmlinuz}.part`, vmlinuz);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  const initScript = join(here, 'guest-init.sh');
  if (!existsSync(initramfs) || statSync(initramfs).mtimeMs < statSync(initScript).mtimeMs) {
    log(`building the initramfs of ${release}`);
    const busybox = staticBusybox();
    const stage = mkdtempSync(join(cacheRoot, `.${release}-initramfs-`));
    try {
      for (const sub of ['bin', 'dev', 'proc', 'sys', 'newroot', 'lower', 'upper', 'out', 'modules']) mkdirSync(join(stage, sub));
      copyFileSync(busybox, join(stage, 'bin', 'busybox'));
      chmodSync(join(stage, 'bin', 'busybox'), 0o755);
      copyFileSync(initScript, join(stage, 'init'));
      chmodSync(join(stage, 'init'), 0o755);
      for (const file of readdirSync(moduleDir)) copyFileSync(join(moduleDir, file), join(stage, 'modules', basename(file)));
      packCpio(stage, `${initramfs}.part`);
      renameSync(`${initramfs}.part`, initramfs);
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
  }
  return { series: series.name, package: name, release, vmlinuz, initramfs };
}
