import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { InvalidInputError, NotFoundError, TooLargeError } from './errors.ts';
import { makeDirectoryDurably, renameDurably } from '../durable/index.ts';

/**
 * Where the registry keeps artifact bytes (already envelope-encrypted: a blob store never sees plaintext).
 *
 * Blobs are content-addressed: `put` hashes what it stores and the SHA-256 of the stored bytes is the id, so a
 * blob can be checked against its id by anyone holding it, and a write is idempotent. The interface is the
 * smallest an object store can implement; see docs/registry.md for the S3 mapping.
 */
export interface BlobRef {
  /** Content address: hex SHA-256 of the stored bytes. */
  readonly id: string;
  readonly size: number;
}

export interface BlobPutOptions {
  /** Refuse (TooLargeError) and store nothing once more than this many bytes arrived. */
  readonly maxBytes?: number;
}

export interface BlobStore {
  /** Streams `source` in; the blob becomes visible under its id only once complete and durable. */
  put(source: AsyncIterable<Uint8Array>, options?: BlobPutOptions): Promise<BlobRef>;
  /** Streams bytes `[start, end)` (default: all) of a blob; NotFoundError if absent. */
  get(id: string, range?: { readonly start: number; readonly end: number }): AsyncIterable<Uint8Array>;
  /** Random access: exactly `min(length, size - offset)` bytes from `offset`. */
  read(id: string, offset: number, length: number): Promise<Uint8Array>;
  /** Size of a blob, or undefined when there is none with this id. */
  stat(id: string): Promise<{ readonly size: number } | undefined>;
  exists(id: string): Promise<boolean>;
  /** Removes a blob; absent blobs are not an error (deletes are retried after crashes). */
  delete(id: string): Promise<void>;
}

const BLOB_ID = /^[0-9a-f]{64}$/;

function checkId(id: string): string {
  if (!BLOB_ID.test(id)) throw new InvalidInputError('a blob id is 64 lowercase hex digits');
  return id;
}

/**
 * The default BlobStore: files under `root/sha256/<2 hex>/<2 hex>/<id>`, written to `root/tmp` with mode 0600,
 * fsynced, then renamed into place and the directory fsynced, so a crash leaves a complete blob or none (stray
 * temp files are removed by `sweepTemp`). The layout fans out so no directory holds millions of entries.
 */
export class FsBlobStore implements BlobStore {
  readonly root: string;

  private constructor(root: string) {
    this.root = root;
  }

  static async open(root: string): Promise<FsBlobStore> {
    await makeDirectoryDurably(path.join(root, 'tmp'));
    await makeDirectoryDurably(path.join(root, 'sha256'));
    return new FsBlobStore(path.resolve(root));
  }

  pathOf(id: string): string {
    checkId(id);
    return path.join(this.root, 'sha256', id.slice(0, 2), id.slice(2, 4), id);
  }

  async put(source: AsyncIterable<Uint8Array>, options: BlobPutOptions = {}): Promise<BlobRef> {
    const max = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
    const tmp = path.join(this.root, 'tmp', `${randomBytes(12).toString('hex')}.partial`);
    const handle = await open(tmp, 'wx', 0o600);
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const piece of source) {
        size += piece.byteLength;
        if (size > max) throw new TooLargeError(`the artifact is larger than ${max} bytes`);
        hash.update(piece);
        let done = 0;
        while (done < piece.byteLength) {
          const { bytesWritten } = await handle.write(piece, done, piece.byteLength - done);
          done += bytesWritten;
        }
      }
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await handle.close();
    const id = hash.digest('hex');
    const target = this.pathOf(id);
    const dir = path.dirname(target);
    await makeDirectoryDurably(dir);
    await renameDurably(tmp, target);
    return { id, size };
  }

  async *get(
    id: string,
    range?: { readonly start: number; readonly end: number },
  ): AsyncIterable<Uint8Array> {
    const file = this.pathOf(id);
    const size = (await this.stat(id))?.size;
    if (size === undefined) throw new NotFoundError(`blob ${id}`);
    const start = range?.start ?? 0;
    const end = range?.end ?? size;
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start < 0 ||
      end < start ||
      end > size
    ) {
      throw new InvalidInputError('blob range out of bounds');
    }
    if (start === end) return;
    // createReadStream's `end` is inclusive.
    yield* createReadStream(file, { start, end: end - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>;
  }

  async read(id: string, offset: number, length: number): Promise<Uint8Array> {
    const handle = await open(this.pathOf(id), 'r').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${id}`);
      throw err;
    });
    try {
      const size = (await handle.stat()).size;
      const start = Math.min(Math.max(0, offset), size);
      const n = Math.min(size - start, Math.max(0, length));
      const out = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await handle.read(out, done, n - done, start + done);
        if (bytesRead === 0) return out.subarray(0, done);
        done += bytesRead;
      }
      return out;
    } finally {
      await handle.close();
    }
  }

  async stat(id: string): Promise<{ readonly size: number } | undefined> {
    try {
      const st = await stat(this.pathOf(id));
      return st.isFile() ? { size: st.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async exists(id: string): Promise<boolean> {
    return (await this.stat(id)) !== undefined;
  }

  async delete(id: string): Promise<void> {
    await rm(this.pathOf(id), { force: true });
  }

  /** Removes temp files left by interrupted writes. Call at startup, before any write is in flight. */
  async sweepTemp(): Promise<void> {
    await rm(path.join(this.root, 'tmp'), { recursive: true, force: true });
    await makeDirectoryDurably(path.join(this.root, 'tmp'));
  }
}
