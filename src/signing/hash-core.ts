import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Hashing of one byte range of one file, shared by the worker threads and the in-process path. Memory is bounded
 * by two fixed read buffers per hasher, whatever the file size.
 */

/** Hash identifiers of the OMS schema (§7). BLAKE3 is valid in bundles but has no node:crypto implementation. */
export type HashAlgorithm = 'sha256' | 'blake2b' | 'blake3';
export type SupportedHashAlgorithm = Exclude<HashAlgorithm, 'blake3'>;

export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ['sha256', 'blake2b', 'blake3'];

/** Hex digest length per identifier; `blake2b` is BLAKE2b-512 (Python's `hashlib.blake2b()` default). */
export const DIGEST_HEX_LENGTH: Readonly<Record<HashAlgorithm, number>> = {
  sha256: 64,
  blake2b: 128,
  blake3: 64,
};

const NODE_HASH: Readonly<Record<SupportedHashAlgorithm, string>> = {
  sha256: 'sha256',
  blake2b: 'blake2b512',
};

export function isSupportedHash(h: HashAlgorithm): h is SupportedHashAlgorithm {
  return h !== 'blake3';
}

/** One unit of hashing work: bytes [start, end) of a file that had `fileSize` bytes when it was enumerated. */
export interface HashTask {
  readonly path: string;
  readonly start: number;
  readonly end: number;
  readonly fileSize: number;
  readonly algorithm: SupportedHashAlgorithm;
  /** Open with O_NOFOLLOW, so a file swapped for a symlink after enumeration is refused, not followed. */
  readonly noFollow: boolean;
}

/** A failure that names the file; plain data so it crosses the worker boundary intact. */
export interface HashFailure {
  readonly message: string;
  readonly path: string;
}

export class HashTaskError extends Error {
  readonly path: string;
  constructor(failure: HashFailure, options?: ErrorOptions) {
    super(failure.message, options);
    this.name = 'HashTaskError';
    this.path = failure.path;
  }
}

// 4 MiB reads amortise syscalls and promise hops; two of them let the next read run on the libuv pool while the
// current one is hashed on this thread.
const READ_SIZE = 4 * 1024 * 1024;

export function allocReadBuffers(): [Buffer, Buffer] {
  return [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)];
}

async function readAt(fh: FileHandle, buf: Buffer, position: number, end: number): Promise<number> {
  const length = Math.min(buf.byteLength, end - position);
  if (length <= 0) return 0;
  const { bytesRead } = await fh.read(buf, 0, length, position);
  return bytesRead;
}

function checkUnchanged(task: HashTask, st: Stats): void {
  if (!st.isFile()) throw new HashTaskError({ message: 'is no longer a regular file', path: task.path });
  if (st.size !== task.fileSize)
    throw new HashTaskError({ message: 'changed size while being hashed', path: task.path });
}

const openFlags = (task: HashTask): number => constants.O_RDONLY | (task.noFollow ? constants.O_NOFOLLOW : 0);

function openFailure(task: HashTask, err: unknown): HashTaskError {
  const code = (err as NodeJS.ErrnoException).code;
  const message = code === 'ELOOP' ? 'became a symbolic link' : `cannot be opened (${code ?? 'error'})`;
  return new HashTaskError({ message, path: task.path }, { cause: err });
}

function readFailure(task: HashTask, err: unknown): HashTaskError {
  if (err instanceof HashTaskError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  return new HashTaskError(
    { message: `cannot be read (${code ?? 'error'})`, path: task.path },
    { cause: err },
  );
}

const truncated = (task: HashTask): HashTaskError =>
  new HashTaskError({ message: 'was truncated while being hashed', path: task.path });
// A range that ends at the enumerated size must end the file: a file grown in place keeps its inode and may not
// show in the size check if it grew after that stat.
const grown = (task: HashTask): HashTaskError =>
  new HashTaskError({ message: 'grew while being hashed', path: task.path });

/**
 * Returns the lowercase hex digest of bytes [start, end) of the task's file. Ranges that fit one buffer are read
 * synchronously: for models with thousands of small files (tokenizers, configs), the thread-pool round trips of
 * an asynchronous open, stat, read and close cost more than the hashing. Larger ranges stream asynchronously.
 */
export async function hashTask(task: HashTask, buffers: readonly [Buffer, Buffer]): Promise<string> {
  return task.end - task.start <= buffers[0].byteLength
    ? hashSmall(task, buffers[0])
    : hashLarge(task, buffers);
}

function hashSmall(task: HashTask, buf: Buffer): string {
  let fd: number;
  try {
    fd = openSync(task.path, openFlags(task));
  } catch (err) {
    throw openFailure(task, err);
  }
  try {
    checkUnchanged(task, fstatSync(fd));
    const length = task.end - task.start;
    for (let got = 0; got < length;) {
      const n = readSync(fd, buf, got, length - got, task.start + got);
      if (n === 0) throw truncated(task);
      got += n;
    }
    const digest = createHash(NODE_HASH[task.algorithm]).update(buf.subarray(0, length)).digest('hex');
    if (task.end === task.fileSize && readSync(fd, buf, 0, 1, task.end) !== 0) throw grown(task);
    return digest;
  } catch (err) {
    throw readFailure(task, err);
  } finally {
    closeSync(fd);
  }
}

async function hashLarge(task: HashTask, buffers: readonly [Buffer, Buffer]): Promise<string> {
  let fh: FileHandle;
  try {
    fh = await open(task.path, openFlags(task));
  } catch (err) {
    throw openFailure(task, err);
  }
  // The read in flight must settle before the handle closes, also when hashing fails half-way.
  let pending: Promise<number> = Promise.resolve(0);
  try {
    checkUnchanged(task, await fh.stat());
    const hash = createHash(NODE_HASH[task.algorithm]);
    let position = task.start;
    let [filling, spare] = buffers;
    pending = readAt(fh, filling, position, task.end);
    while (position < task.end) {
      const n = await pending;
      if (n === 0) throw truncated(task);
      position += n;
      [filling, spare] = [spare, filling];
      pending = readAt(fh, filling, position, task.end);
      hash.update(spare.subarray(0, n));
    }
    await pending;
    if (task.end === task.fileSize && (await readAt(fh, buffers[0], position, position + 1)) !== 0) {
      throw grown(task);
    }
    return hash.digest('hex');
  } catch (err) {
    throw readFailure(task, err);
  } finally {
    await pending.catch(() => 0);
    await fh.close();
  }
}
