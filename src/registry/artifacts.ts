import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { PREFIX_BYTES, TAG_BYTES, WardenCryptoError } from '../crypto/index.ts';
import {
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

async function* readFileNoFollow(file: string, onChunk: (chunk: Buffer) => void): AsyncGenerator<Uint8Array> {
  // O_NOFOLLOW: a file swapped for a symlink after it was hashed is refused rather than read through.
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      // A fresh copy: encryptStream may keep a reference until the chunk is sealed.
      const chunk = Buffer.from(buffer.subarray(0, bytesRead));
      onChunk(chunk);
      yield chunk;
    }
  } finally {
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
    const ref = await this.blobs.put(
      encryptStream(
        readFileNoFollow(file, (chunk) => hash.update(chunk)),
        {
          recipients: [this.#keys],
          context: artifactContext(binding),
          plaintextLength: expected.size,
          ...(this.#chunkExponent === undefined ? {} : { chunkExponent: this.#chunkExponent }),
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
      yield* decryptStream(this.blobs.get(blobId), {
        keys: [this.#keys],
        expectedContext: artifactContext(binding),
      });
    } catch (err) {
      if (tampered(err)) throw integrityFailure(binding, err);
      throw err;
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
