import { createHmac, randomBytes } from 'node:crypto';
import {
  ChunkedDecryption,
  ChunkedEncryption,
  DecryptionError,
  PREFIX_BYTES,
  TAG_BYTES,
  constantTimeEqual,
  expandInputKey,
} from '../crypto/index.ts';
import {
  ContextMismatchError,
  KeyUnavailableError,
  MalformedEnvelopeError,
  TruncatedEnvelopeError,
} from './errors.ts';
import {
  DEFAULT_CHUNK_EXPONENT,
  coreDigest,
  declaredHeaderLength,
  encodeCore,
  encodeHeaderWithoutMac,
  parseHeader,
  slotAad,
  slotLabel,
} from './header.ts';
import type { EncryptionContext, KeySlot, ParsedHeader } from './header.ts';
import type { ChunkLayout } from '../crypto/index.ts';
import type { SlotUnwrapper, SlotWrapper } from './keys.ts';
import { COLLECT_BUFFERS_EVERY_BYTES, GarbageStep } from './memory.ts';

export const DATA_KEY_BYTES = 32;
const HEADER_MAC_INFO = Buffer.from('warden/envelope/v1 header-mac', 'ascii');

export interface EncryptOptions {
  /** One slot per wrapper, in order; at least one. */
  readonly recipients: readonly SlotWrapper[];
  readonly context?: EncryptionContext;
  /** Chunk size as a power of two, 2^14..2^24; default 2^20 (1 MiB). */
  readonly chunkExponent?: number;
  /** Declared when known (files): authenticated, and lets readers detect truncation from the size alone. */
  readonly plaintextLength?: number;
}

export interface DecryptOptions {
  readonly keys: readonly SlotUnwrapper[];
  /** Entries the header's context must contain with exactly these values. */
  readonly expectedContext?: EncryptionContext;
}

export function headerMac(dataKey: Uint8Array, macInput: Uint8Array): Buffer {
  const macKey = expandInputKey(dataKey, HEADER_MAC_INFO, 32);
  try {
    return createHmac('sha256', macKey).update(macInput).digest();
  } finally {
    macKey.fill(0);
  }
}

/** A message ready to stream: its header (MAC included), the payload prefix, and the chunk sealer. */
export interface PreparedEncryption {
  readonly header: Buffer;
  readonly encryption: ChunkedEncryption;
  readonly layout: ChunkLayout;
  /** The data key and C2SP context, for worker threads that seal chunk ranges (`ChunkedEncryption.resume`). */
  readonly dataKey: Buffer;
  readonly payloadContext: Buffer;
}

export async function prepareEncryption(options: EncryptOptions): Promise<PreparedEncryption> {
  if (options.recipients.length === 0) throw new MalformedEnvelopeError('at least one recipient is required');
  const chunkExponent = options.chunkExponent ?? DEFAULT_CHUNK_EXPONENT;
  const coreBytes = encodeCore({
    chunkExponent,
    plaintextLength: options.plaintextLength,
    context: options.context ?? {},
  });
  const aadFor = (recipient: SlotWrapper) => (ref: string) =>
    slotAad({ type: recipient.slotType, ref }, coreBytes);
  const [first, ...others] = options.recipients;
  let dataKey: Buffer;
  const slots: KeySlot[] = [];
  if (first?.generateDataKey !== undefined) {
    const generated = await first.generateDataKey(aadFor(first));
    if (generated.dataKey.length !== DATA_KEY_BYTES) {
      throw new MalformedEnvelopeError('the key provider returned a data key of the wrong size');
    }
    dataKey = generated.dataKey;
    slots.push(generated.slot);
  } else {
    dataKey = randomBytes(DATA_KEY_BYTES);
    if (first !== undefined) slots.push(await first.wrapDataKey(dataKey, aadFor(first)));
  }
  for (const recipient of others) slots.push(await recipient.wrapDataKey(dataKey, aadFor(recipient)));
  const body = encodeHeaderWithoutMac(coreBytes, slots);
  const header = Buffer.concat([body, headerMac(dataKey, body)]);
  const payloadContext = coreDigest(coreBytes);
  const encryption = ChunkedEncryption.create(dataKey, payloadContext, 2 ** chunkExponent);
  return { header, encryption, layout: encryption.layout, dataKey, payloadContext };
}

/** An opened envelope: header verified, context checked, commitment checked; chunks can be decrypted. */
export interface OpenedEnvelope {
  readonly header: ParsedHeader;
  readonly decryption: ChunkedDecryption;
  readonly layout: ChunkLayout;
  readonly dataKey: Buffer;
  readonly payloadContext: Buffer;
}

export function checkContext(actual: EncryptionContext, expected: EncryptionContext | undefined): void {
  if (expected === undefined) return;
  const mismatched = Object.keys(expected).filter(
    (k) => !Object.hasOwn(actual, k) || actual[k] !== expected[k],
  );
  if (mismatched.length > 0) throw new ContextMismatchError(mismatched.sort());
}

/**
 * Finds a slot the caller can open, unwraps the data key and verifies the header MAC. Slot selection uses only
 * public slot data; a slot that names the caller's key but fails to authenticate is a `DecryptionError`.
 */
export async function unlockHeader(header: ParsedHeader, options: DecryptOptions): Promise<Buffer> {
  checkContext(header.context, options.expectedContext);
  for (const slot of header.slots) {
    const unwrapper = options.keys.find((k) => k.canUnwrap(slot));
    if (unwrapper === undefined) continue;
    const dataKey = await unwrapper.unwrapDataKey(slot, slotAad(slot, header.coreBytes));
    if (
      dataKey.length !== DATA_KEY_BYTES ||
      !constantTimeEqual(headerMac(dataKey, header.macInput), header.mac)
    ) {
      dataKey.fill(0);
      throw new DecryptionError();
    }
    return dataKey;
  }
  throw new KeyUnavailableError(header.slots.map(slotLabel));
}

export async function openEnvelope(
  header: ParsedHeader,
  prefix: Buffer,
  options: DecryptOptions,
): Promise<OpenedEnvelope> {
  const dataKey = await unlockHeader(header, options);
  const payloadContext = coreDigest(header.coreBytes);
  const decryption = ChunkedDecryption.open(dataKey, payloadContext, prefix, 2 ** header.chunkExponent);
  return { header, decryption, layout: decryption.layout, dataKey, payloadContext };
}

/** Accumulates incoming buffers and hands out exact-size pieces without copying when sizes already line up. */
class ByteQueue {
  #parts: Buffer[] = [];
  length = 0;

  push(buf: Uint8Array): void {
    if (buf.byteLength === 0) return;
    this.#parts.push(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
    this.length += buf.byteLength;
  }

  take(n: number): Buffer {
    const first = this.#parts[0];
    let out: Buffer;
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#parts.shift();
      else this.#parts[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const part = this.#parts[0];
        if (part === undefined) throw new RangeError('ByteQueue underflow');
        const used = Math.min(part.length, n - filled);
        part.copy(out, filled, 0, used);
        filled += used;
        if (used === part.length) this.#parts.shift();
        else this.#parts[0] = part.subarray(used);
      }
    }
    this.length -= n;
    return out;
  }

  peek(n: number): Buffer {
    const out = this.take(n);
    this.#parts.unshift(out);
    this.length += n;
    return out;
  }
}

/**
 * Streaming encryption: yields the header and payload prefix, then one sealed chunk per full chunk of input,
 * then the short final chunk. Memory stays at about one chunk plus the source's own buffering.
 */
export async function* encryptStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: EncryptOptions,
): AsyncGenerator<Buffer> {
  const prepared = await prepareEncryption(options);
  const { encryption, layout } = prepared;
  prepared.dataKey.fill(0);
  yield Buffer.concat([prepared.header, encryption.prefix()]);
  const queue = new ByteQueue();
  const garbage = new GarbageStep(COLLECT_BUFFERS_EVERY_BYTES);
  let index = 0;
  let total = 0;
  for await (const piece of source) {
    queue.push(piece);
    while (queue.length >= layout.chunkSize) {
      yield* encryption.sealChunk(index++, queue.take(layout.chunkSize));
      total += layout.chunkSize;
      garbage.add(layout.chunkSize);
    }
  }
  total += queue.length;
  if (options.plaintextLength !== undefined && total !== options.plaintextLength) {
    throw new MalformedEnvelopeError(`input was ${total} bytes, not the declared ${options.plaintextLength}`);
  }
  yield* encryption.sealChunk(index, queue.take(queue.length));
}

/**
 * Streaming decryption: verifies the header, the context and the commitment before any chunk, then yields each
 * chunk's plaintext only after its tag verified. A full-size chunk is decrypted only once more bytes are known to
 * follow, because the final chunk must be shorter; at the end, trailing or missing bytes fail.
 */
export async function* decryptStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: DecryptOptions,
): AsyncGenerator<Buffer> {
  const iterator =
    Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  const queue = new ByteQueue();
  let ended = false;
  const fill = async (n: number): Promise<boolean> => {
    while (queue.length < n && !ended) {
      const next = await iterator.next();
      if (next.done === true) ended = true;
      else queue.push(next.value);
    }
    return queue.length >= n;
  };

  if (!(await fill(8))) throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  const headerLength = declaredHeaderLength(queue.peek(8));
  if (headerLength === undefined || !(await fill(headerLength))) {
    throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  }
  const header = parseHeader(queue.take(headerLength));
  if (!(await fill(PREFIX_BYTES))) {
    checkContext(header.context, options.expectedContext);
    throw new TruncatedEnvelopeError();
  }
  const opened = await openEnvelope(header, queue.take(PREFIX_BYTES), options);
  opened.dataKey.fill(0);
  const { decryption, layout } = opened;
  const sealedSize = layout.encryptedChunkSize;
  // With a declared length the number of full chunks and the final chunk's sealed size are known, so input that
  // ends early or runs on is reported as truncated (as the file and descriptor paths do) rather than as a failed
  // tag, and the chunks add up to that length.
  const declared = header.plaintextLength;
  const fullChunks = declared === undefined ? undefined : Math.floor(declared / layout.chunkSize);
  const garbage = new GarbageStep(COLLECT_BUFFERS_EVERY_BYTES);
  let index = 0;
  while (await fill(sealedSize + 1)) {
    if (fullChunks !== undefined && index >= fullChunks) throw new TruncatedEnvelopeError();
    const plain = decryption.openChunk(index++, queue.take(sealedSize));
    garbage.add(plain.length);
    yield plain;
  }
  // What is left is the final chunk: its sealed length must lie in [TAG_BYTES, sealedSize).
  if (queue.length < TAG_BYTES || queue.length >= sealedSize) throw new TruncatedEnvelopeError();
  if (
    declared !== undefined &&
    (index !== fullChunks || queue.length !== (declared % layout.chunkSize) + TAG_BYTES)
  ) {
    throw new TruncatedEnvelopeError();
  }
  yield decryption.openChunk(index, queue.take(queue.length));
}

/** Drains a stream of buffers into one buffer (for small envelopes such as manifests). */
export async function collectBytes(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(part);
  return Buffer.concat(parts);
}
