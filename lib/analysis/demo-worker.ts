// The program `ksm demo` runs N times: it builds the same data set in every process
// (seeded, so the bytes match), says "ready" on stdout and then holds the data until
// it is killed or its parent goes away. Not part of the public API.
//
//   node demo-worker.js [SIZE_MIB] [SEED]

/** A small xorshift generator: the same seed gives the same bytes in every worker. */
class SeededRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.next() % items.length] as T;
  }
}

const CITIES = ['Lisbon', 'Oslo', 'Nairobi', 'Osaka', 'Quito', 'Tallinn', 'Perth', 'Montreal'];
const WORDS = ['alpha', 'delta', 'kilo', 'lima', 'oscar', 'sierra', 'tango', 'zulu', 'echo', 'golf'];

/** Buffers of seeded bytes: the cache of an application (images, compiled templates, blobs). */
function buildBlobs(random: SeededRandom, bytes: number, blobSize: number): Buffer[] {
  const blobs: Buffer[] = [];
  for (let made = 0; made < bytes; made += blobSize) {
    const blob = Buffer.allocUnsafe(blobSize);
    const words = new Uint32Array(blob.buffer, blob.byteOffset, blobSize / 4);
    for (let i = 0; i < words.length; i++) words[i] = random.next();
    blobs.push(blob);
  }
  return blobs;
}

/** A parsed JSON data set: objects and strings on the V8 heap, and the text it came from. */
function buildRecords(random: SeededRandom, textBytes: number): { text: string; records: unknown[] } {
  const rows: object[] = [];
  let size = 0;
  for (let id = 0; size < textBytes; id++) {
    const row = {
      id,
      name: `${random.pick(WORDS)}-${random.pick(WORDS)}-${random.next().toString(36)}`,
      city: random.pick(CITIES),
      tags: [random.pick(WORDS), random.pick(WORDS)],
      score: random.next() / 2 ** 32,
      active: random.next() % 2 === 0,
    };
    size += JSON.stringify(row).length + 1;
    rows.push(row);
  }
  const text = JSON.stringify(rows);
  return { text, records: JSON.parse(text) as unknown[] };
}

function main(): void {
  const sizeMiB = Number(process.argv[2] ?? 32);
  const seed = Number(process.argv[3] ?? 42);
  if (!Number.isFinite(sizeMiB) || sizeMiB <= 0 || !Number.isInteger(seed)) {
    process.stderr.write('usage: demo-worker [SIZE_MIB] [SEED]\n');
    process.exit(2);
  }
  const random = new SeededRandom(seed);
  const total = sizeMiB * 2 ** 20;
  // Large Buffers are mmapped by malloc at the same page offset in every worker, so
  // they merge; small ones sit in malloc's heap at offsets that differ between
  // processes, so their pages rarely match, like V8's objects. The JSON text merges.
  const data = {
    largeBlobs: buildBlobs(random, total * 0.6, 256 * 1024),
    smallBlobs: buildBlobs(random, total * 0.1, 16 * 1024),
    dataset: buildRecords(random, total * 0.3),
  };
  // Reachable from the global object, so the data lives as long as the process.
  (globalThis as { demoData?: unknown }).demoData = data;
  process.stdout.write(`ready ${process.pid}\n`);
  // Leave when the demo that started us is gone (we were reparented), even after SIGKILL.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 500);
}

main();
