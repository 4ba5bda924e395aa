import { randomBytes } from 'node:crypto';
import { lstat, open, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PREFIX_BYTES, TAG_BYTES } from '../crypto/index.ts';
import { MalformedEnvelopeError, OutputNotRegularFileError, TruncatedEnvelopeError } from './errors.ts';
import { checkContext, openEnvelope, prepareEncryption } from './envelope.ts';
import type { DecryptOptions, EncryptOptions, OpenedEnvelope } from './envelope.ts';
import { MAX_HEADER_BYTES, declaredHeaderLength, parseHeader } from './header.ts';
import type { ParsedHeader } from './header.ts';
import { inFlight, readExactly, readFully, settled, writeFully } from './io.ts';
import {
  COLLECT_CONTEXTS_EVERY_BYTES,
  COLLECT_READS_EVERY_BYTES,
  GarbageStep,
  releaseAll,
  releaseBuffer,
} from './memory.ts';
import { renameDurably } from '../durable/index.ts';

export type ProgressCallback = (bytesDone: number) => void;

export interface FileEncryptOptions extends Omit<EncryptOptions, 'plaintextLength'> {
  readonly onProgress?: ProgressCallback;
}

export interface FileDecryptOptions extends DecryptOptions {
  readonly onProgress?: ProgressCallback;
}

/**
 * Writes `output` through a temp file in the same directory and renames it into place only on success, so a
 * failed or interrupted run never leaves partial output (or, for decryption, unauthenticated plaintext) behind.
 * Only regular files are replaced: renaming over a device, FIFO or directory (say `-o /dev/null` as root) would
 * destroy it, so such targets are refused (stdout streaming is the way to feed a pipe).
 */
export async function writeAtomically<T>(
  output: string,
  write: (handle: FileHandle, tempPath: string) => Promise<T>,
): Promise<T> {
  const existing = await lstat(output).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
  if (existing !== undefined && !existing.isFile()) {
    throw new OutputNotRegularFileError(output);
  }
  const tmp = path.join(
    path.dirname(output),
    `.${path.basename(output)}.${randomBytes(6).toString('hex')}.partial`,
  );
  const handle = await open(tmp, 'wx', 0o600);
  let result: T;
  try {
    result = await write(handle, tmp);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  await renameDurably(tmp, output);
  return result;
}

/**
 * The pipeline both streaming file paths share: chunk k+1 is read (on libuv's thread pool) and chunk k-1
 * written while `transform` seals or opens chunk k on the main thread. Two reusable input buffers; each output
 * is freed as soon as its write completed (`releaseBuffer`), so memory stays at a few chunks whatever the file
 * size (see memory.ts). Every read and write started is settled before this returns or throws, so the caller
 * may close its handles (the I/O runs on raw descriptors; see io.ts).
 */
async function pipeChunks(
  count: number,
  read: (k: number, into: Buffer) => Promise<Buffer>,
  buffers: readonly [Buffer, Buffer],
  transform: (k: number, input: Buffer) => readonly Buffer[],
  write: (output: readonly Buffer[]) => Promise<void>,
  onChunk: (k: number, input: Buffer) => void,
): Promise<void> {
  let pendingRead = inFlight(read(0, buffers[0]));
  let readAhead: Promise<Buffer> | undefined = pendingRead;
  let pendingWrite: Promise<void> | undefined;
  const garbage = new GarbageStep(COLLECT_CONTEXTS_EVERY_BYTES);
  try {
    for (let k = 0; k < count; k++) {
      const input = await pendingRead;
      readAhead = undefined;
      if (k + 1 < count) {
        // Chunk k+1 goes into the other buffer, whose chunk was transformed (copied out) an iteration ago.
        pendingRead = inFlight(read(k + 1, buffers[(k + 1) % 2 === 0 ? 0 : 1]));
        readAhead = pendingRead;
      }
      const output = transform(k, input);
      await pendingWrite;
      // Freed the moment the write completes: usually before the next chunk's output is allocated.
      pendingWrite = inFlight(
        write(output).then(() => {
          releaseAll(output);
        }),
      );
      garbage.add(input.length);
      onChunk(k, input);
    }
    await pendingWrite;
  } finally {
    await settled(readAhead);
    await settled(pendingWrite);
  }
}

/**
 * Encrypts a file into an open sink, streaming through `pipeChunks`: the sink receives the header, the
 * payload prefix and the sealed chunks at its current position.
 */
export async function encryptFileToHandle(
  input: string,
  sink: FileHandle,
  options: FileEncryptOptions,
): Promise<ParsedHeader> {
  const source = await open(input, 'r');
  try {
    const size = (await source.stat()).size;
    const prepared = await prepareEncryption({ ...options, plaintextLength: size });
    prepared.dataKey.fill(0);
    const { encryption, layout } = prepared;
    const chunkSize = layout.chunkSize;
    await sink.write(Buffer.concat([prepared.header, encryption.prefix()]));
    await pipeChunks(
      layout.chunkCount(size),
      (k, into) => readFully(source.fd, into, Math.min(chunkSize, size - k * chunkSize), k * chunkSize),
      [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)],
      (k, plain) => encryption.sealChunk(k, plain),
      (sealed) => writeFully(sink.fd, sealed),
      (k, plain) => options.onProgress?.(k * chunkSize + plain.length),
    );
    return parseHeader(prepared.header);
  } finally {
    await source.close();
  }
}

/** Encrypts `input` into `output`, which appears only once complete. */
export function encryptFile(
  input: string,
  output: string,
  options: FileEncryptOptions,
): Promise<ParsedHeader> {
  return writeAtomically(output, (sink) => encryptFileToHandle(input, sink, options));
}

/**
 * An envelope file opened for authenticated random access: header, context and commitment are verified on
 * open, the plaintext length is authenticated (declared in the header and checked against the file size, or
 * read from the final chunk), and each read decrypts only the chunks it covers.
 *
 * A read allocates nothing but the plaintext it returns. The sealed bytes go into a scratch buffer the file
 * keeps (two sealed chunks: any range up to one chunk long), and each chunk's decrypted output is copied into
 * the result and freed at once (`releaseBuffer`). Allocating all three per read (sealed range, chunk outputs,
 * their concatenation: ~6 MiB for a 1 MiB read) made V8 run a full mark-compact every ~12 reads for external
 * memory, and each of those reads took 4–40 ms instead of ~1 ms (see docs/envelope.md, "Random access").
 */
export class EnvelopeFile {
  readonly header: ParsedHeader;
  readonly size: number;
  readonly #handle: FileHandle;
  readonly #opened: OpenedEnvelope;
  /** Grown on demand up to two sealed chunks; while one read uses it, concurrent reads allocate their own. */
  #scratch: Buffer | undefined;
  #scratchLent = false;
  readonly #garbage = new GarbageStep(COLLECT_READS_EVERY_BYTES);

  private constructor(handle: FileHandle, opened: OpenedEnvelope, size: number) {
    this.#handle = handle;
    this.#opened = opened;
    this.header = opened.header;
    this.size = size;
  }

  static async open(file: string, options: DecryptOptions): Promise<EnvelopeFile> {
    const handle = await open(file, 'r');
    try {
      const verified = await openVerified(handle, options);
      verified.opened.dataKey.fill(0);
      const reader = new EnvelopeFile(handle, verified.opened, verified.size);
      if (verified.opened.header.plaintextLength === undefined) {
        // Without a declared length, authenticate it by decrypting the final chunk (it must be the short one).
        releaseBuffer(await reader.chunk(reader.chunkCount - 1));
      }
      return reader;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get chunkCount(): number {
    return this.#opened.layout.chunkCount(this.size);
  }

  /** The authenticated plaintext of chunk `index` (its sealed bytes are read into the file's scratch buffer). */
  async chunk(index: number): Promise<Buffer> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.chunkCount) {
      throw new RangeError('chunk index out of range');
    }
    const length = this.#sealedLength(index, 1);
    this.#garbage.add(length - TAG_BYTES);
    const sealed = this.#borrow(length);
    try {
      return this.#opened.decryption.openChunk(index, await this.#readSealed(index, length, sealed));
    } finally {
      this.#giveBack(sealed);
    }
  }

  /** Plaintext bytes [start, end), authenticated chunk by chunk; nothing is returned unless all of them verify. */
  async read(start: number, end: number): Promise<Buffer> {
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start < 0 ||
      end < start ||
      end > this.size
    ) {
      throw new RangeError(`range [${start}, ${end}) is outside the plaintext of ${this.size} bytes`);
    }
    if (start === end) return Buffer.alloc(0);
    this.#garbage.add(end - start);
    const { layout, decryption } = this.#opened;
    const chunkSize = layout.chunkSize;
    const first = Math.floor(start / chunkSize);
    const count = Math.floor((end - 1) / chunkSize) - first + 1;
    const length = this.#sealedLength(first, count);
    const buffer = this.#borrow(length);
    try {
      const sealed = await this.#readSealed(first, length, buffer);
      const openAt = (i: number) => {
        const from = i * layout.encryptedChunkSize;
        return decryption.openChunk(
          first + i,
          sealed.subarray(from, Math.min(from + layout.encryptedChunkSize, length)),
        );
      };
      const base = first * chunkSize;
      if (count === 1 && start === base && end - start === Math.min(chunkSize, this.size - base)) {
        return openAt(0);
      }
      // Filled only with plaintext that authenticated; a chunk failing later throws and drops all of it.
      const result = Buffer.allocUnsafe(end - start);
      for (let i = 0; i < count; i++) {
        const plain = openAt(i);
        const chunkStart = base + i * chunkSize;
        plain.copy(
          result,
          Math.max(0, chunkStart - start),
          Math.max(0, start - chunkStart),
          Math.min(plain.length, end - chunkStart),
        );
        releaseBuffer(plain);
      }
      return result;
    } finally {
      this.#giveBack(buffer);
    }
  }

  async close(): Promise<void> {
    // Freed now rather than whenever this object is collected; a read still using it frees it when done.
    if (this.#scratch !== undefined && !this.#scratchLent) releaseBuffer(this.#scratch);
    this.#scratch = undefined;
    await this.#handle.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Bytes of chunks [first, first + count) on disk, tags included; the last one may be the short final chunk. */
  #sealedLength(first: number, count: number): number {
    const layout = this.#opened.layout;
    const lastIndex = first + count - 1;
    const lastPlain = Math.min(layout.chunkSize, this.size - lastIndex * layout.chunkSize);
    return (count - 1) * layout.encryptedChunkSize + lastPlain + TAG_BYTES;
  }

  #readSealed(first: number, length: number, into: Buffer): Promise<Buffer> {
    const start = this.header.headerLength + this.#opened.layout.chunkOffset(first);
    return readExactly(this.#handle, into, length, start);
  }

  /** The scratch buffer unless another read holds it or the range is longer than two chunks. */
  #borrow(length: number): Buffer {
    if (this.#scratchLent || length > 2 * this.#opened.layout.encryptedChunkSize) {
      return Buffer.allocUnsafeSlow(length);
    }
    if (this.#scratch === undefined || this.#scratch.length < length) {
      if (this.#scratch !== undefined) releaseBuffer(this.#scratch);
      this.#scratch = Buffer.allocUnsafeSlow(length);
    }
    this.#scratchLent = true;
    return this.#scratch;
  }

  #giveBack(buffer: Buffer): void {
    if (buffer === this.#scratch) this.#scratchLent = false;
    else releaseBuffer(buffer);
  }
}

/**
 * Reads the header and payload prefix of an open envelope file, unlocks the data key, checks context and
 * commitment, and derives the plaintext length from the file size (which must match a declared length). The
 * caller owns (and must wipe) `opened.dataKey`.
 */
export async function openVerified(
  handle: FileHandle,
  options: DecryptOptions,
): Promise<{ opened: OpenedEnvelope; prefix: Buffer; size: number }> {
  const fileSize = (await handle.stat()).size;
  const header = await readHeader(handle, fileSize);
  if (fileSize < header.headerLength + PREFIX_BYTES) {
    checkContext(header.context, options.expectedContext);
    throw new TruncatedEnvelopeError();
  }
  const prefix = await readExactly(handle, Buffer.alloc(PREFIX_BYTES), PREFIX_BYTES, header.headerLength);
  const opened = await openEnvelope(header, prefix, options);
  const size = opened.layout.plaintextLength(fileSize - header.headerLength);
  if (size === undefined || (header.plaintextLength !== undefined && header.plaintextLength !== size)) {
    opened.dataKey.fill(0);
    throw new TruncatedEnvelopeError();
  }
  return { opened, prefix, size };
}

/** Reads and parses the header of an open envelope file, bounded by the 1 MiB header cap. */
export async function readHeader(handle: FileHandle, fileSize: number): Promise<ParsedHeader> {
  if (fileSize < 8) throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  const fixed = await readExactly(handle, Buffer.alloc(8), 8, 0);
  const headerLength = declaredHeaderLength(fixed);
  if (headerLength === undefined || headerLength > MAX_HEADER_BYTES)
    throw new MalformedEnvelopeError('bad header length');
  if (fileSize < headerLength) throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  return parseHeader(await readExactly(handle, Buffer.alloc(headerLength), headerLength, 0));
}

/** Reads just the header of an envelope file: no key needed (what `warden inspect` shows). */
export async function inspectFile(file: string): Promise<{ header: ParsedHeader; fileSize: number }> {
  const handle = await open(file, 'r');
  try {
    const fileSize = (await handle.stat()).size;
    return { header: await readHeader(handle, fileSize), fileSize };
  } finally {
    await handle.close();
  }
}

/**
 * Decrypts a file into an open sink, streaming through `pipeChunks`. Every chunk is authenticated, the short
 * final one included, and written only once its tag verified.
 */
export async function decryptFileToHandle(
  input: string,
  sink: FileHandle,
  options: FileDecryptOptions,
): Promise<ParsedHeader> {
  const source = await open(input, 'r');
  try {
    const { opened, size } = await openVerified(source, options);
    opened.dataKey.fill(0);
    const { header, layout, decryption } = opened;
    const count = layout.chunkCount(size);
    const buffers = [
      Buffer.allocUnsafe(layout.encryptedChunkSize),
      Buffer.allocUnsafe(layout.encryptedChunkSize),
    ] as const;
    const readSealed = (k: number, into: Buffer) =>
      readFully(
        source.fd,
        into,
        Math.min(layout.chunkSize, size - k * layout.chunkSize) + TAG_BYTES,
        header.headerLength + layout.chunkOffset(k),
      );
    if (header.plaintextLength === undefined) {
      // As in EnvelopeFile.open: without a declared length, authenticate it (the final, short chunk) first.
      releaseBuffer(decryption.openChunk(count - 1, await readSealed(count - 1, buffers[0])));
    }
    let done = 0;
    await pipeChunks(
      count,
      readSealed,
      buffers,
      (k, sealed) => [decryption.openChunk(k, sealed)],
      (plain) => writeFully(sink.fd, plain),
      (k, sealed) => {
        done += sealed.length - TAG_BYTES;
        options.onProgress?.(done);
      },
    );
    return header;
  } finally {
    await source.close();
  }
}

/** Decrypts `input` into `output`; the plaintext becomes visible under `output` only once all of it verified. */
export function decryptFile(
  input: string,
  output: string,
  options: FileDecryptOptions,
): Promise<ParsedHeader> {
  return writeAtomically(output, (sink) => decryptFileToHandle(input, sink, options));
}
