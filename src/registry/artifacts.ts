import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { PREFIX_BYTES, TAG_BYTES, WardenCryptoError } from '../crypto/index.ts';
import {
  DEFAULT_CHUNK_EXPONENT,
  decryptStream,
  encryptStream,
  KeyUnavailableError,
  MAX_HEADER_BYTES,
  openEnvelope,
  parseHeader,
  type EncryptionContext,
  type SlotUnwrapper,
  type SlotWrapper,
} from '../envelope/index.ts';
import type { ByteSource } from '../scanner/index.ts';
import type { BlobStore } from './blob-store.ts';
import { IntegrityError } from './errors.ts';

/**
 * Artifacts at rest: every file of a model or dataset version is one envelope (docs/spec/envelope.md) in the blob
 * store, its data key from the KMS, and its authenticated context naming the registry object and the path, so a
 * blob moved under another version or path fails to decrypt instead of being served as that file.
 */

export interface ArtifactBinding {
  readonly kind: 'model' | 'dataset';
  readonly name: string;
  readonly version: string;
  /** The version's identity: OMS root digest. */
  readonly root: string;
  readonly path: string;
}

export type ArtifactKeys = SlotWrapper & SlotUnwrapper;

export function artifactContext(binding: ArtifactBinding): EncryptionContext {
  return {
    'registry.kind': binding.kind,
    'registry.name': binding.name,
    'registry.path': binding.path,
    'registry.root': binding.root,
    'registry.version': binding.version,
  };
}

/** Envelope failures that mean the stored bytes are not what was written (not: "no key for this slot"). */
function tampered(err: unknown): boolean {
  return err instanceof WardenCryptoError && !(err instanceof KeyUnavailableError);
}

function integrityFailure(binding: ArtifactBinding, err: unknown): IntegrityError {
  return new IntegrityError(
    `stored ${binding.kind} file ${JSON.stringify(binding.path)} of ${binding.name}@${binding.version} failed authentication`,
    { cause: err },
  );
}

/** Plaintext is read in pieces of about this size: few thread-pool round trips, still a small bound on memory. */
const READ_BYTES = 4 * 1024 * 1024;
/** Read buffers cycled through: the piece being encrypted, the one being read, the one just released. */
const READ_RING = 3;

/**
 * Reads `file` in pieces of `pieceSize` bytes (whole chunks), the next read in flight while the current piece is
 * hashed and encrypted. The pieces cycle through a few buffers instead of fresh memory for every read: freshly
 * faulted-in pages cost more than the AES-GCM, and a copy out of one shared buffer costs a memcpy on top.
 *
 * Reuse is safe because encryptStream consumes whole chunks: a piece of whole chunks is sealed completely before
 * the next piece is asked for, and a buffer is refilled only two requests after it was handed out. A short piece
 * means the end of the file; should the file grow after it (it is then refused by the length and digest checks),
 * what follows goes into fresh buffers, since the short piece's tail may still sit in encryptStream's queue.
 */
async function* readFileNoFollow(
  file: string,
  pieceSize: number,
  onPiece: (piece: Buffer) => void,
): AsyncGenerator<Buffer> {
  // O_NOFOLLOW: a file swapped for a symlink after it was hashed is refused rather than read through.
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  const ring: Buffer[] = [];
  let reads = 0;
  let wholePieces = true;
  const readPiece = async (position: number): Promise<Buffer> => {
    const slot = reads++ % READ_RING;
    let buffer = wholePieces ? ring[slot] : undefined;
    if (buffer === undefined) {
      buffer = Buffer.allocUnsafe(pieceSize);
      if (wholePieces) ring[slot] = buffer;
    }
    let got = 0;
    while (got < pieceSize) {
      const { bytesRead } = await handle.read(buffer, got, pieceSize - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < pieceSize) wholePieces = false;
    return buffer.subarray(0, got);
  };
  // The read in flight must settle before the handle closes, also when the consumer stops early.
  let pending: Promise<Buffer> | undefined = readPiece(0);
  try {
    for (let position = 0; ;) {
      const piece: Buffer = await pending;
      pending = undefined;
      if (piece.length === 0) return;
      position += piece.length;
      pending = readPiece(position);
      onPiece(piece);
      yield piece;
    }
  } finally {
    await pending?.catch(() => undefined);
    await handle.close();
  }
}

export class ArtifactVault {
  readonly blobs: BlobStore;
  readonly #keys: ArtifactKeys;
  readonly #chunkExponent: number | undefined;

  constructor(blobs: BlobStore, keys: ArtifactKeys, options: { chunkExponent?: number } = {}) {
    this.blobs = blobs;
    this.#keys = keys;
    this.#chunkExponent = options.chunkExponent;
  }

  /**
   * Encrypts `file` into the blob store. The plaintext is hashed as it is encrypted and must match `expected`
   * (what was hashed and scanned before): a file changed in between is refused and its blob removed.
   */
  async store(
    file: string,
    binding: ArtifactBinding,
    expected: { readonly sha256: string; readonly size: number },
  ): Promise<{ blobId: string; storedSize: number }> {
    const hash = createHash('sha256');
    const chunkExponent = this.#chunkExponent ?? DEFAULT_CHUNK_EXPONENT;
    const chunkSize = 2 ** chunkExponent;
    // Whole chunks per piece, so encryptStream seals views of the pieces instead of copying across them.
    const pieceSize = chunkSize * Math.max(1, Math.floor(READ_BYTES / chunkSize));
    const ref = await this.blobs.put(
      encryptStream(
        readFileNoFollow(file, pieceSize, (piece) => hash.update(piece)),
        {
          recipients: [this.#keys],
          context: artifactContext(binding),
          plaintextLength: expected.size,
          chunkExponent,
        },
      ),
    );
    if (hash.digest('hex') !== expected.sha256) {
      await this.blobs.delete(ref.id);
      throw new IntegrityError(`file ${JSON.stringify(binding.path)} changed while it was being stored`);
    }
    return { blobId: ref.id, storedSize: ref.size };
  }

  /** The plaintext of an artifact, each chunk released only after it authenticated. */
  async *decrypt(blobId: string, binding: ArtifactBinding): AsyncGenerator<Buffer> {
    if (!(await this.blobs.exists(blobId))) {
      throw new IntegrityError(`stored file ${JSON.stringify(binding.path)} is missing from the blob store`);
    }
    try {
      yield* decryptStream(this.#sealedPieces(blobId), {
        keys: [this.#keys],
        expectedContext: artifactContext(binding),
      });
    } catch (err) {
      if (tampered(err)) throw integrityFailure(binding, err);
      throw err;
    }
  }

  /**
   * The blob cut where decryptStream cuts it: the header with the prefix, then runs of whole sealed chunks, the next
   * run read while the current one is decrypted. decryptStream then opens views of these pieces; pieces that do not
   * line up with chunks (a plain 1 MiB stream against 1 MiB + 16-byte sealed chunks) make it copy every chunk into
   * fresh memory first. Only where to cut comes from the unauthenticated header here: decryptStream still parses,
   * authenticates and checks everything, so a lying header only yields pieces it rejects.
   */
  async *#sealedPieces(blobId: string): AsyncGenerator<Uint8Array> {
    const blobSize = (await this.blobs.stat(blobId))?.size ?? 0;
    const fixed = Buffer.from(await this.blobs.read(blobId, 0, 8));
    const headerLength = fixed.length === 8 ? fixed.readUInt32BE(4) : 0;
    if (headerLength < 8 || headerLength > MAX_HEADER_BYTES || headerLength + PREFIX_BYTES > blobSize) {
      // Not an envelope worth cutting: decryptStream reports what is wrong with it.
      yield* this.blobs.get(blobId);
      return;
    }
    const header = parseHeader(Buffer.from(await this.blobs.read(blobId, 0, headerLength)));
    const sealed = 2 ** header.chunkExponent + TAG_BYTES;
    const run = sealed * Math.max(1, Math.floor(READ_BYTES / sealed));
    let position = headerLength + PREFIX_BYTES;
    yield await this.blobs.read(blobId, 0, position);
    let pending: Promise<Uint8Array> | undefined = this.blobs.read(blobId, position, run);
    try {
      while (pending !== undefined) {
        const piece: Uint8Array = await pending;
        pending = undefined;
        if (piece.byteLength === 0) return;
        position += piece.byteLength;
        if (piece.byteLength === run) pending = this.blobs.read(blobId, position, run);
        yield piece;
      }
    } finally {
      await pending?.catch(() => undefined);
    }
  }

  /** Authenticated random access to an artifact's plaintext (what the scanner reads). */
  async source(blobId: string, binding: ArtifactBinding): Promise<EnvelopeBlobSource> {
    try {
      return await EnvelopeBlobSource.open(this.blobs, blobId, this.#keys, artifactContext(binding));
    } catch (err) {
      if (tampered(err)) throw integrityFailure(binding, err);
      throw err;
    }
  }
}

type OpenedEnvelope = Awaited<ReturnType<typeof openEnvelope>>;

/**
 * Random access over an envelope held in a BlobStore: the header, slot and commitment are verified on open, the
 * plaintext length is authenticated against the blob size, and every read decrypts only the chunks it covers.
 * (envelope/EnvelopeFile does the same over a local file; this one needs only `BlobStore.read`, so it works on
 * an object store with range reads.)
 */
export class EnvelopeBlobSource implements ByteSource {
  readonly size: number;
  /**
   * The first failed read. The scanner turns read errors into an `error` verdict; the registry checks this so a
   * tampered blob is reported as an integrity failure, not as an odd file.
   */
  failure: unknown = undefined;
  readonly #blobs: BlobStore;
  readonly #id: string;
  readonly #opened: OpenedEnvelope;

  private constructor(blobs: BlobStore, id: string, opened: OpenedEnvelope, size: number) {
    this.#blobs = blobs;
    this.#id = id;
    this.#opened = opened;
    this.size = size;
  }

  static async open(
    blobs: BlobStore,
    id: string,
    keys: ArtifactKeys,
    expectedContext: EncryptionContext,
  ): Promise<EnvelopeBlobSource> {
    const blobSize = (await blobs.stat(id))?.size;
    if (blobSize === undefined) throw new IntegrityError('a stored file is missing from the blob store');
    const fixed = Buffer.from(await blobs.read(id, 0, 8));
    if (fixed.length < 8) throw new IntegrityError('a stored file is truncated');
    const headerLength = fixed.readUInt32BE(4);
    if (headerLength < 8 || headerLength > MAX_HEADER_BYTES || headerLength + PREFIX_BYTES > blobSize) {
      throw new IntegrityError('a stored file has a malformed header');
    }
    const header = parseHeader(Buffer.from(await blobs.read(id, 0, headerLength)));
    const prefix = Buffer.from(await blobs.read(id, headerLength, PREFIX_BYTES));
    const opened = await openEnvelope(header, prefix, { keys: [keys], expectedContext });
    opened.dataKey.fill(0);
    const size = opened.layout.plaintextLength(blobSize - headerLength);
    // The registry always declares the length, so the header (MAC-verified above) authenticates it.
    if (size === undefined || header.plaintextLength === undefined || size !== header.plaintextLength) {
      throw new IntegrityError('a stored file is truncated or extended');
    }
    return new EnvelopeBlobSource(blobs, id, opened, size);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    try {
      return await this.#read(offset, length);
    } catch (err) {
      this.failure ??= err;
      throw err;
    }
  }

  async #read(offset: number, length: number): Promise<Uint8Array> {
    const start = Math.min(Math.max(0, offset), this.size);
    const end = Math.min(this.size, start + Math.max(0, length));
    if (start === end) return new Uint8Array(0);
    const { layout, decryption, header } = this.#opened;
    const chunkSize = layout.chunkSize;
    const first = Math.floor(start / chunkSize);
    const last = Math.floor((end - 1) / chunkSize);
    const from = header.headerLength + layout.chunkOffset(first);
    const lastPlain = Math.min(chunkSize, this.size - last * chunkSize);
    const sealedLength = (last - first) * layout.encryptedChunkSize + lastPlain + TAG_BYTES;
    const sealed = await this.#blobs.read(this.#id, from, sealedLength);
    if (sealed.byteLength !== sealedLength) throw new IntegrityError('a stored file is truncated');
    const plain: Buffer[] = [];
    for (let k = first; k <= last; k++) {
      const at = (k - first) * layout.encryptedChunkSize;
      plain.push(
        decryption.openChunk(k, sealed.subarray(at, Math.min(at + layout.encryptedChunkSize, sealedLength))),
      );
    }
    const joined = plain.length === 1 && plain[0] !== undefined ? plain[0] : Buffer.concat(plain);
    return joined.subarray(start - first * chunkSize, end - first * chunkSize);
  }
}
