import type { FileHandle } from 'node:fs/promises';
import { TruncatedEnvelopeError } from './errors.ts';

/**
 * Reads exactly `length` bytes at `position` into `buffer` and returns that view; a file that ends first is a
 * truncated envelope (or a plaintext that shrank while it was being encrypted).
 */
export async function readExactly(
  handle: FileHandle,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<Buffer> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new TruncatedEnvelopeError();
    done += bytesRead;
  }
  return buffer.subarray(0, length);
}
