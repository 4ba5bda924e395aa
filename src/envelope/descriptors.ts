import { PREFIX_BYTES, TAG_BYTES } from '../crypto/index.ts';
import { MalformedEnvelopeError, TruncatedEnvelopeError } from './errors.ts';
import { checkContext, openEnvelope, prepareEncryption } from './envelope.ts';
import type { DecryptOptions, EncryptOptions } from './envelope.ts';
import { MAX_HEADER_BYTES, declaredHeaderLength, parseHeader } from './header.ts';
import type { ParsedHeader } from './header.ts';
import { inFlight, readUpTo, settled, writeFully } from './io.ts';
import { COLLECT_CONTEXTS_EVERY_BYTES, GarbageStep, releaseAll } from './memory.ts';
import type { ProgressCallback } from './files.ts';

/*
 * Envelopes streamed between two descriptors read and written in sequence — stdin and stdout (pipes, sockets,
 * terminals, redirected files) — in the file paths' bounded memory: two reused input buffers, the next chunk read
 * on libuv's thread pool while the current one is sealed or opened, each output freed once written. Node's
 * stream objects instead deliver a pipe in 64 KiB pieces, each its own buffer, which the garbage collector frees
 * late: 72–78 MiB peak for a 2 GiB stream against ~61 MiB here.
 */

export interface DescriptorEncryptOptions extends EncryptOptions {
  readonly onProgress?: ProgressCallback;
}

/**
 * Encrypts everything read from `input` into an envelope written to `output`. The plaintext length goes into
 * the header when `options.plaintextLength` is given (and the input must then have exactly that many bytes; the
 * envelope written so far is invalid otherwise); else the final, short chunk marks the end.
 */
export async function encryptDescriptor(
  input: number,
  output: number,
  options: DescriptorEncryptOptions,
): Promise<ParsedHeader> {
  const prepared = await prepareEncryption(options);
  prepared.dataKey.fill(0);
  const { encryption, layout } = prepared;
  const chunkSize = layout.chunkSize;
  await writeFully(output, [prepared.header, encryption.prefix()]);
  const buffers = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)] as const;
  const garbage = new GarbageStep(COLLECT_CONTEXTS_EVERY_BYTES);
  let pendingRead = inFlight(readUpTo(input, buffers[0], chunkSize, null));
  // A read started ahead and not yet awaited (the first one is awaited at once).
  let readAhead: Promise<Buffer> | undefined;
  let pendingWrite: Promise<void> | undefined;
  let total = 0;
  try {
    for (let k = 0; ; k++) {
      const plain = await pendingRead;
      readAhead = undefined;
      // A short read is the end of input: that chunk is the final one (empty when the input fills whole chunks).
      const final = plain.length < chunkSize;
      if (!final) {
        pendingRead = inFlight(readUpTo(input, buffers[(k + 1) % 2 === 0 ? 0 : 1], chunkSize, null));
        readAhead = pendingRead;
      }
      const sealed = encryption.sealChunk(k, plain);
      await pendingWrite;
      pendingWrite = inFlight(
        writeFully(output, sealed).then(() => {
          releaseAll(sealed);
        }),
      );
      total += plain.length;
      garbage.add(plain.length);
      options.onProgress?.(total);
      if (final) break;
    }
    await pendingWrite;
  } finally {
    await settled(readAhead);
    await settled(pendingWrite);
  }
  if (options.plaintextLength !== undefined && total !== options.plaintextLength) {
    throw new MalformedEnvelopeError(`input was ${total} bytes, not the declared ${options.plaintextLength}`);
  }
  return parseHeader(prepared.header);
}

/**
 * Decrypts an envelope read from `input` into `output`. Header, context and commitment are verified before any
 * chunk; each chunk's plaintext is written only after its tag verified and, as in `decryptStream`, a full-size
 * chunk only once more input is known to follow (the final chunk must be shorter). Trailing, missing or
 * reordered bytes fail with the same errors as the other decryption paths.
 */
export async function decryptDescriptor(
  input: number,
  output: number,
  options: DecryptOptions & { readonly onProgress?: ProgressCallback },
): Promise<ParsedHeader> {
  const fixed = await readUpTo(input, Buffer.alloc(8), 8, null);
  if (fixed.length < 8) throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  const headerLength = declaredHeaderLength(fixed);
  if (headerLength === undefined || headerLength > MAX_HEADER_BYTES)
    throw new MalformedEnvelopeError('bad header length');
  const headerBytes = Buffer.alloc(headerLength);
  fixed.copy(headerBytes);
  const rest = headerLength - fixed.length;
  if ((await readUpTo(input, headerBytes.subarray(fixed.length), rest, null)).length < rest)
    throw new TruncatedEnvelopeError('the input ends inside the envelope header');
  const header = parseHeader(headerBytes);
  const prefix = await readUpTo(input, Buffer.alloc(PREFIX_BYTES), PREFIX_BYTES, null);
  if (prefix.length < PREFIX_BYTES) {
    checkContext(header.context, options.expectedContext);
    throw new TruncatedEnvelopeError();
  }
  const opened = await openEnvelope(header, prefix, options);
  opened.dataKey.fill(0);
  const { decryption, layout } = opened;
  const sealedSize = layout.encryptedChunkSize;
  // With a declared length every chunk's sealed size is known, so input that ends early or runs on is reported
  // as truncated (as the file paths do) rather than as a failed tag, and the chunks add up to that length.
  const declared = header.plaintextLength;
  const sealedSizeOf = (k: number): number | undefined =>
    declared === undefined
      ? undefined
      : k < Math.floor(declared / layout.chunkSize)
        ? sealedSize
        : (declared % layout.chunkSize) + TAG_BYTES;
  const buffers = [Buffer.allocUnsafe(sealedSize), Buffer.allocUnsafe(sealedSize)] as const;
  const garbage = new GarbageStep(COLLECT_CONTEXTS_EVERY_BYTES);
  let pendingRead = inFlight(readUpTo(input, buffers[0], sealedSize, null));
  let readAhead: Promise<Buffer> | undefined;
  let pendingWrite: Promise<void> | undefined;
  // The plaintext of the last full-size chunk, held until more input shows it was not the last one.
  let held: Buffer | undefined;
  let total = 0;
  const write = async (plain: Buffer) => {
    await pendingWrite;
    pendingWrite = inFlight(
      writeFully(output, [plain]).then(() => {
        releaseAll([plain]);
      }),
    );
    total += plain.length;
    options.onProgress?.(total);
  };
  try {
    for (let k = 0; ; k++) {
      const sealed = await pendingRead;
      readAhead = undefined;
      const expected = sealedSizeOf(k);
      if (expected !== undefined && sealed.length !== expected) throw new TruncatedEnvelopeError();
      if (held !== undefined) {
        // Input ended right after a full-size chunk: the final chunk is missing.
        if (sealed.length === 0) throw new TruncatedEnvelopeError();
        await write(held);
        held = undefined;
      }
      if (sealed.length < sealedSize) {
        if (sealed.length < TAG_BYTES) throw new TruncatedEnvelopeError();
        await write(decryption.openChunk(k, sealed));
        break;
      }
      pendingRead = inFlight(readUpTo(input, buffers[(k + 1) % 2 === 0 ? 0 : 1], sealedSize, null));
      readAhead = pendingRead;
      held = decryption.openChunk(k, sealed);
      garbage.add(sealed.length);
    }
    await pendingWrite;
  } finally {
    await settled(readAhead);
    await settled(pendingWrite);
    if (held !== undefined) releaseAll([held]);
  }
  return header;
}
