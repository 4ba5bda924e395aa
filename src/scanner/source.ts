import type { FileHandle } from 'node:fs/promises';

/**
 * Random access to the bytes under scan. Every parser reads through this, so a multi-GB file is never loaded
 * whole: a file source answers with positional reads, a buffer source with zero-copy views, and an archive
 * entry stored without compression is a window onto its parent.
 */
export interface ByteSource {
  readonly size: number;
  /** Exactly `min(length, size - offset)` bytes from `offset` (empty past the end). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export class BufferSource implements ByteSource {
  readonly bytes: Uint8Array;
  readonly size: number;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.size = bytes.byteLength;
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    const start = Math.min(Math.max(0, offset), this.size);
    return Promise.resolve(this.bytes.subarray(start, Math.min(this.size, start + Math.max(0, length))));
  }
}

export class FileSource implements ByteSource {
  readonly size: number;
  private readonly handle: FileHandle;
  constructor(handle: FileHandle, size: number) {
    this.handle = handle;
    this.size = size;
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    const start = Math.min(Math.max(0, offset), this.size);
    return this.readInto(start, Buffer.allocUnsafe(Math.min(this.size - start, Math.max(0, length))));
  }

  /** Fills `target` from `offset` (clamped to the file); returns the filled part, shorter at the end. */
  async readInto(offset: number, target: Buffer): Promise<Buffer> {
    const start = Math.min(Math.max(0, offset), this.size);
    const n = Math.min(this.size - start, target.length);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await this.handle.read(target, done, n - done, start + done);
      if (bytesRead === 0) break; // file shrank while being scanned
      done += bytesRead;
    }
    return target.subarray(0, done);
  }
}

/**
 * Sequential windows over a source for a reader that is done with each window before it asks for the next (the
 * pickle walker keeps offsets, never views). A file is read into one reused buffer: a fresh multi-MiB buffer per
 * window costs page faults on every read, which on a busy VM took scanning from above 1 GB/s to under 0.5 GB/s.
 * Any other source answers with its own `read` (views of a buffer, decrypted chunks).
 */
export class WindowReader {
  private readonly src: ByteSource;
  private scratch: Buffer | undefined;

  constructor(src: ByteSource) {
    this.src = src;
  }

  /** The window `[offset, offset + length)`, valid until the next call. */
  read(offset: number, length: number): Promise<Uint8Array> {
    if (!(this.src instanceof FileSource)) return this.src.read(offset, length);
    const want = Math.max(0, Math.min(length, this.src.size - offset));
    if (this.scratch === undefined || this.scratch.length < want) this.scratch = Buffer.allocUnsafe(want);
    return this.src.readInto(offset, this.scratch.subarray(0, want));
  }
}

/** A window `[start, start + size)` of another source. */
class SliceSource implements ByteSource {
  readonly size: number;
  private readonly parent: ByteSource;
  private readonly start: number;
  constructor(parent: ByteSource, start: number, size: number) {
    this.parent = parent;
    this.start = start;
    this.size = Math.max(0, Math.min(size, parent.size - start));
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    const start = Math.min(Math.max(0, offset), this.size);
    return this.parent.read(this.start + start, Math.min(Math.max(0, length), this.size - start));
  }
}

export function sliceSource(parent: ByteSource, start: number, size: number): ByteSource {
  if (parent instanceof BufferSource) {
    const s = Math.min(start, parent.size);
    return new BufferSource(parent.bytes.subarray(s, Math.min(parent.size, s + size)));
  }
  return new SliceSource(parent, start, size);
}

/** Thrown by `Cursor` when a read runs past the end of the source. */
export class TruncatedError extends Error {
  readonly offset: number;
  constructor(offset: number) {
    super(`truncated at offset ${offset}`);
    this.name = 'TruncatedError';
    this.offset = offset;
  }
}

/**
 * Sequential little-endian reader over a source with a read-ahead window: header-walking parsers (GGUF,
 * protobuf, tar, zip central directory) make many small reads, which this turns into few large ones.
 */
export class Cursor {
  pos: number;
  private readonly src: ByteSource;
  private window: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(new ArrayBuffer(0));
  private winStart = 0;
  private readonly windowSize: number;

  constructor(src: ByteSource, pos = 0, windowSize = 1 << 20) {
    this.src = src;
    this.pos = pos;
    this.windowSize = windowSize;
  }

  get size(): number {
    return this.src.size;
  }

  get remaining(): number {
    return this.src.size - this.pos;
  }

  /** Makes `[pos, pos + n)` addressable in the window; throws `TruncatedError` past the end. */
  private async fill(n: number): Promise<number> {
    if (this.pos + n > this.src.size) throw new TruncatedError(this.pos);
    const rel = this.pos - this.winStart;
    if (rel >= 0 && rel + n <= this.window.byteLength) return rel;
    this.window = await this.src.read(this.pos, Math.max(n, this.windowSize));
    this.view = new DataView(this.window.buffer, this.window.byteOffset, this.window.byteLength);
    this.winStart = this.pos;
    return 0;
  }

  async bytes(n: number): Promise<Uint8Array> {
    if (n > this.windowSize) {
      if (this.pos + n > this.src.size) throw new TruncatedError(this.pos);
      const out = await this.src.read(this.pos, n);
      this.pos += n;
      return out;
    }
    const rel = await this.fill(n);
    this.pos += n;
    return this.window.subarray(rel, rel + n);
  }

  skip(n: number): void {
    this.pos += n;
  }

  async u32(): Promise<number> {
    const rel = await this.fill(4);
    this.pos += 4;
    return this.view.getUint32(rel, true);
  }

  async u64(): Promise<bigint> {
    const rel = await this.fill(8);
    this.pos += 8;
    return this.view.getBigUint64(rel, true);
  }

  /** Protobuf base-128 varint, as a BigInt (int64 fields may use all ten bytes). */
  async varint(): Promise<bigint> {
    const rel = await this.fill(Math.min(10, this.src.size - this.pos));
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (rel + i >= this.window.byteLength) throw new TruncatedError(this.pos + i);
      const b = this.view.getUint8(rel + i);
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) {
        this.pos += i + 1;
        return result;
      }
      shift += 7n;
    }
    throw new RangeError(`varint longer than 10 bytes at offset ${this.pos}`);
  }
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8 decode; `null` when the bytes are not valid UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string | null {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return null;
  }
}
