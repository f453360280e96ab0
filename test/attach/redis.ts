// redis-server instances for the attach tests: started on random loopback ports,
// filled with the same seeded values, and a small RESP client to load and check them.
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { startProgram, type Started } from './targets.js';

/** The value of key i: seeded printable bytes, the same in every instance. */
export function seededValue(i: number, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let x = (i + 1) * 2654435761 >>> 0 || 1;
  for (let j = 0; j < bytes; j++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[j] = 33 + (x % 90);
  }
  return out;
}

function encode(args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const data = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

type Reply = string | number | Buffer | null | Error;

/** One connection; replies come back in the order of the commands. */
export class RespClient {
  private buffer = Buffer.alloc(0);
  private waiting: Array<(reply: Reply) => void> = [];
  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
  }

  static open(port: number): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new RespClient(socket)));
      socket.once('error', reject);
    });
  }

  send(...args: Array<string | Buffer>): Promise<Reply> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.socket.write(encode(args));
    });
  }

  close(): void {
    this.socket.end();
  }

  private drain(): void {
    for (;;) {
      const parsed = this.parse(0);
      if (parsed === undefined) return;
      this.buffer = this.buffer.subarray(parsed.end);
      this.waiting.shift()?.(parsed.reply);
    }
  }

  private parse(at: number): { reply: Reply; end: number } | undefined {
    const lineEnd = this.buffer.indexOf('\r\n', at);
    if (lineEnd < 0) return undefined;
    const type = String.fromCharCode(this.buffer[at] ?? 0);
    const line = this.buffer.toString('latin1', at + 1, lineEnd);
    if (type === '+') return { reply: line, end: lineEnd + 2 };
    if (type === '-') return { reply: new Error(line), end: lineEnd + 2 };
    if (type === ':') return { reply: Number(line), end: lineEnd + 2 };
    if (type === '$') {
      const length = Number(line);
      if (length < 0) return { reply: null, end: lineEnd + 2 };
      if (this.buffer.length < lineEnd + 2 + length + 2) return undefined;
      return { reply: this.buffer.subarray(lineEnd + 2, lineEnd + 2 + length), end: lineEnd + 2 + length + 2 };
    }
    throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

export function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** Starts redis-server on a free loopback port, without persistence, DEBUG allowed from loopback. */
export async function startRedis(): Promise<Started & { port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port = randomPort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'];
    try {
      const started = await startProgram('/usr/bin/redis-server', args, /Ready to accept connections/);
      return { ...started, port };
    } catch (error) {
      if (attempt >= 5) throw error; // the port was taken, most likely
    }
  }
}

/** SETs `keys` seeded values of `bytes` each, pipelined, and waits for the last reply. */
export async function fillRedis(port: number, keys: number, bytes: number): Promise<void> {
  const client = await RespClient.open(port);
  const replies: Array<Promise<Reply>> = [];
  for (let i = 0; i < keys; i++) replies.push(client.send('SET', `key:${i}`, seededValue(i, bytes)));
  const results = await Promise.all(replies);
  client.close();
  const failed = results.filter((reply) => reply !== 'OK');
  if (failed.length > 0) throw new Error(`${failed.length} SETs failed: ${String(failed[0])}`);
}

/** `DEBUG DIGEST`: a hash of the whole data set, to compare before and after. */
export function redisDigest(port: number): string {
  const run = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'DEBUG', 'DIGEST'], { encoding: 'utf8', timeout: 30_000 });
  if (run.status !== 0 || !/^[0-9a-f]{40}$/.test(run.stdout.trim())) throw new Error(`DEBUG DIGEST failed: ${run.stdout}${run.stderr}`);
  return run.stdout.trim();
}
