// Real servers from Debian's packages, each started N times on 127.0.0.1 and loaded
// with the same keys and values, so their memory holds the same data.
import { connect } from 'node:net';

const KEYS = 6000;
const VALUE_BYTES = 8192;

/** The value of key i: seeded bytes (printable, so both protocols carry them as is). */
function value(i) {
  const bytes = Buffer.allocUnsafe(VALUE_BYTES);
  let x = (i + 1) * 2654435761 >>> 0 || 1;
  for (let j = 0; j < VALUE_BYTES; j++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    bytes[j] = 33 + (x % 90);
  }
  return bytes;
}

/** Sends `request` and resolves when the end of the reply matches `until`; bounded by a timeout. */
function exchange(port, request, until, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let tail = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`127.0.0.1:${port} did not finish loading in ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.on('data', (chunk) => {
      tail = (tail + chunk.toString('latin1')).slice(-64);
      if (until.test(tail)) {
        clearTimeout(timer);
        socket.end();
        resolve();
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(request);
  });
}

/** Tries to connect until the server listens (bounded). */
export async function waitListening(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await new Promise((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port }, () => {
          socket.end();
          resolve();
        });
        socket.on('error', reject);
      });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}: ${error.message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export const redis = {
  name: 'redis-server',
  command: (port) => ['/usr/bin/redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
  async load(port) {
    const parts = [];
    for (let i = 0; i < KEYS; i++) {
      const key = `key:${i}`;
      const v = value(i);
      parts.push(Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${v.length}\r\n`), v, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('*1\r\n$4\r\nPING\r\n'));
    await exchange(port, Buffer.concat(parts), /\+PONG\r\n$/);
  },
};

export const memcached = {
  name: 'memcached',
  command: (port) => ['/usr/bin/memcached', '-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '256', '-t', '1', '-u', 'nobody'],
  async load(port) {
    const parts = [];
    for (let i = 0; i < KEYS; i++) {
      const v = value(i);
      parts.push(Buffer.from(`set key:${i} 0 0 ${v.length} noreply\r\n`), v, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('version\r\n'));
    await exchange(port, Buffer.concat(parts), /VERSION \S+\r\n$/);
  },
};
