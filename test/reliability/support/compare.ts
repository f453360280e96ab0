import { createHash } from 'node:crypto';

/** Length and hash of an output, plus its head: enough to compare megabytes readably. */
export function fingerprint(output: Buffer): string {
  const head = output.subarray(0, 200).toString('utf8');
  return `${output.length} bytes, sha256 ${createHash('sha256').update(output).digest('hex').slice(0, 16)}, starting ${JSON.stringify(head)}`;
}
