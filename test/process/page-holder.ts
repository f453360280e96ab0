import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

// A process holding anonymous pages advised MADV_MERGEABLE (and nothing else mergeable):
// each set is `name:pages`, page i of set `name` holding bytes unique to (seed, name, i),
// so pages merge only with the same page of the same set in another holder. The set
// named `zero` is written zero-filled pages, which merge with the zero page under use_zero_pages.
const HOLDER = `
import hashlib, mmap, sys, time
seed, sets = sys.argv[1], sys.argv[2:]
regions = []
for spec in sets:
    name, pages = spec.split(':')
    pages = int(pages)
    region = mmap.mmap(-1, pages * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(pages):
        page = bytes(4096) if name == 'zero' else hashlib.sha256(f'{seed}/{name}/{i}'.encode()).digest() * 128
        region[i * 4096:(i + 1) * 4096] = page
    region.madvise(mmap.MADV_MERGEABLE)
    regions.append(region)
print('ready', flush=True)
time.sleep(1800)
`;

export function startPageHolder(seed: string, sets: string[]): Promise<ChildProcess> {
  const child = spawn('/usr/bin/python3', ['-c', HOLDER, seed, ...sets], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`page holder exited with ${code}`)));
  });
}

export function stopAll(children: ChildProcess[]): Promise<void[]> {
  return Promise.all(
    children.map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGKILL'))))),
  );
}

/** A number from /proc/PID/ksm_stat. */
export function ksmStatField(pid: number, name: string): number {
  return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(readFileSync(`/proc/${pid}/ksm_stat`, 'latin1'))?.[1] ?? NaN);
}
