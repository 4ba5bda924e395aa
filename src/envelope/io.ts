import { read, writev } from 'node:fs';
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

/*
 * The per-chunk I/O of the streaming loops goes through the callback API on the raw descriptor rather than
 * FileHandle methods. A FileHandle call runs through an async wrapper that spreads its arguments through an
 * iterator: over a few thousand chunks those internals become hot enough for V8 to optimise them with TurboFan,
 * whose compiler code and zone memory alone add ~5 MiB to the process's peak RSS (measured: 63 MiB at 512 MiB
 * of input, 68 MiB at 2 GiB). The callback path keeps the JavaScript per chunk small enough to stay in the
 * cheaper tiers. Unlike FileHandle operations, these are not awaited by `FileHandle.close()`, so callers
 * settle every operation they started before their handles can close (`settled`).
 */

/**
 * Reads into `buffer` until `length` bytes or the end of input, at `position` (a file) or from the descriptor's
 * current position (`null`: a pipe, socket or terminal, read in sequence), and returns the view of what was read:
 * shorter only at the end of input.
 */
export function readUpTo(
  fd: number,
  buffer: Buffer,
  length: number,
  position: number | null,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const more = () => {
      if (done === length) resolve(buffer.subarray(0, length));
      else read(fd, buffer, done, length - done, position === null ? null : position + done, after);
    };
    const after = (err: NodeJS.ErrnoException | null, bytesRead: number) => {
      // Only a descriptor another program left non-blocking (a pipe) answers EAGAIN; a file never does.
      if (err?.code === 'EAGAIN') setTimeout(more, EAGAIN_RETRY_MS);
      else if (err !== null) reject(err);
      else if (bytesRead === 0) resolve(buffer.subarray(0, done));
      else {
        done += bytesRead;
        more();
      }
    };
    more();
  });
}

/** `readExactly` on a descriptor, for the streaming loops. */
export async function readFully(
  fd: number,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<Buffer> {
  const got = await readUpTo(fd, buffer, length, position);
  if (got.length < length) throw new TruncatedEnvelopeError();
  return got;
}

/**
 * Writes all of `buffers` at the descriptor's current position (or at `position`), continuing after short
 * writes.
 */
export function writeFully(
  fd: number,
  buffers: readonly Buffer[],
  position: number | null = null,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let rest = buffers.filter((b) => b.length > 0);
    let at = position;
    const more = () => {
      if (rest.length === 0) resolve();
      else writev(fd, rest, at, after);
    };
    const after = (err: NodeJS.ErrnoException | null, written: number) => {
      if (err?.code === 'EAGAIN') {
        // A pipe another program left non-blocking is full: wait for the reader.
        setTimeout(more, EAGAIN_RETRY_MS);
        return;
      }
      if (err !== null) {
        reject(err);
        return;
      }
      if (at !== null) at += written;
      let skip = written;
      const remaining: Buffer[] = [];
      for (const b of rest) {
        if (skip >= b.length) skip -= b.length;
        else {
          remaining.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      rest = remaining;
      more();
    };
    more();
  });
}

/** How long to wait before retrying a descriptor that another program left non-blocking and had nothing ready. */
export const EAGAIN_RETRY_MS = 1;

/**
 * Marks an operation started ahead of its use as handled, so that if it fails while the loop awaits something
 * else the process does not die of an unhandled rejection; the failure still surfaces where it is awaited.
 */
export function inFlight<T>(operation: Promise<T>): Promise<T> {
  operation.catch(() => undefined);
  return operation;
}

/** Waits for an operation whatever its outcome (its failure is reported where it is awaited, not here). */
export async function settled(operation: Promise<unknown> | undefined): Promise<void> {
  await operation?.then(
    () => undefined,
    () => undefined,
  );
}
