import { createHash } from 'node:crypto';
import { MalformedEnvelopeError } from './errors.ts';

/**
 * The Warden envelope header: a pure, bounded codec. Layout and rules are specified in docs/spec/envelope.md;
 * this file is the normative reference implementation of that document's "Header" section.
 */

export const MAGIC = Buffer.from('WRDN', 'ascii');
export const FORMAT_VERSION = 1;
/** Suite 1: C2SP chunked encryption with AES-256-GCM and HKDF-SHA-512; header MAC HMAC-SHA-256. */
export const SUITE_AES256GCM_HKDFSHA512 = 1;
export const HEADER_MAC_BYTES = 32;
export const MAX_HEADER_BYTES = 1024 * 1024;
/** magic, length, a core with no context, one slot with 1-byte ref and 1-byte wrapped key, the MAC. */
export const MIN_HEADER_BYTES = 8 + 14 + 1 + 7 + 32;
export const MIN_CHUNK_EXPONENT = 14;
export const MAX_CHUNK_EXPONENT = 24;
export const DEFAULT_CHUNK_EXPONENT = 20;
export const MAX_CONTEXT_ENTRIES = 64;
export const MAX_CONTEXT_KEY_BYTES = 255;
export const MAX_CONTEXT_VALUE_BYTES = 4096;
export const MAX_SLOTS = 16;
export const MAX_SLOT_REF_BYTES = 255;
export const MAX_WRAPPED_KEY_BYTES = 4096;
/** Below 2^52 so that even 16 KiB chunks keep the chunk index below C2SP's 2^38 limit. */
export const MAX_PLAINTEXT_LENGTH = 2 ** 52 - 1;

const FIXED_PREFIX_BYTES = 8; // magic(4) || header length(4)
const FLAG_HAS_LENGTH = 0x01;

export type SlotType = 'local' | 'kms';
const SLOT_TYPE_CODES: Readonly<Record<SlotType, number>> = { local: 1, kms: 2 };

/** A data key wrapped for one key: `ref` names it (a local key id, or a KMS key name and version). */
export interface KeySlot {
  readonly type: SlotType;
  readonly ref: string;
  readonly wrappedKey: Buffer;
}

export type EncryptionContext = Readonly<Record<string, string>>;

/** The part of the header bound into the payload's key derivation; key slots and MAC are not in it. */
export interface HeaderCore {
  readonly chunkExponent: number;
  readonly plaintextLength: number | undefined;
  readonly context: EncryptionContext;
}

export interface ParsedHeader extends HeaderCore {
  readonly slots: readonly KeySlot[];
  /** Total header bytes, MAC included: the payload starts here. */
  readonly headerLength: number;
  /** The encoded core (version byte through the end of the context), as it appears on the wire. */
  readonly coreBytes: Buffer;
  /** Everything the MAC covers: header bytes [0, headerLength - 32). */
  readonly macInput: Buffer;
  readonly mac: Buffer;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function validateContext(context: EncryptionContext): [Buffer, Buffer][] {
  const entries = Object.entries(context).map(([k, v]): [Buffer, Buffer] => [
    Buffer.from(utf8.encode(k)),
    Buffer.from(utf8.encode(v)),
  ]);
  if (entries.length > MAX_CONTEXT_ENTRIES)
    throw new MalformedEnvelopeError(`at most ${MAX_CONTEXT_ENTRIES} context entries`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_CONTEXT_KEY_BYTES)
      throw new MalformedEnvelopeError('context key must be 1-255 bytes');
    if (v.length > MAX_CONTEXT_VALUE_BYTES)
      throw new MalformedEnvelopeError('context value must be at most 4096 bytes');
  }
  entries.sort((a, b) => Buffer.compare(a[0], b[0]));
  for (const [i, [key]] of entries.entries()) {
    if (i > 0 && Buffer.compare(entries[i - 1]?.[0] ?? Buffer.alloc(0), key) === 0)
      throw new MalformedEnvelopeError('duplicate context key');
  }
  return entries;
}

/**
 * Canonical encoding of the core: version, suite, chunk exponent, flags, plaintext length, then the context
 * entries sorted by the bytes of their UTF-8 keys. One context has exactly one encoding.
 */
export function encodeCore(core: HeaderCore): Buffer {
  if (
    !Number.isInteger(core.chunkExponent) ||
    core.chunkExponent < MIN_CHUNK_EXPONENT ||
    core.chunkExponent > MAX_CHUNK_EXPONENT
  ) {
    throw new MalformedEnvelopeError(
      `chunk size must be 2^${MIN_CHUNK_EXPONENT}..2^${MAX_CHUNK_EXPONENT} bytes`,
    );
  }
  const length = core.plaintextLength;
  if (
    length !== undefined &&
    (!Number.isSafeInteger(length) || length < 0 || length > MAX_PLAINTEXT_LENGTH)
  ) {
    throw new MalformedEnvelopeError('plaintext length out of range');
  }
  const entries = validateContext(core.context);
  const fixed = Buffer.alloc(14);
  fixed[0] = FORMAT_VERSION;
  fixed[1] = SUITE_AES256GCM_HKDFSHA512;
  fixed[2] = core.chunkExponent;
  fixed[3] = length === undefined ? 0 : FLAG_HAS_LENGTH;
  fixed.writeBigUInt64BE(BigInt(length ?? 0), 4);
  fixed.writeUInt16BE(entries.length, 12);
  const parts: Buffer[] = [fixed];
  for (const [k, v] of entries) {
    parts.push(u16(k.length), k, u16(v.length), v);
  }
  return Buffer.concat(parts);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function encodeSlots(slots: readonly KeySlot[]): Buffer {
  if (slots.length < 1 || slots.length > MAX_SLOTS)
    throw new MalformedEnvelopeError(`1-${MAX_SLOTS} key slots required`);
  const parts: Buffer[] = [Buffer.of(slots.length)];
  for (const slot of slots) {
    const ref = Buffer.from(utf8.encode(slot.ref));
    if (ref.length === 0 || ref.length > MAX_SLOT_REF_BYTES)
      throw new MalformedEnvelopeError('key slot reference must be 1-255 bytes');
    if (slot.wrappedKey.length === 0 || slot.wrappedKey.length > MAX_WRAPPED_KEY_BYTES) {
      throw new MalformedEnvelopeError('wrapped key must be 1-4096 bytes');
    }
    parts.push(
      Buffer.of(SLOT_TYPE_CODES[slot.type]),
      u16(ref.length),
      ref,
      u16(slot.wrappedKey.length),
      slot.wrappedKey,
    );
  }
  return Buffer.concat(parts);
}

/** Header bytes without the MAC, and where the MAC goes: magic || length || core || slots. */
export function encodeHeaderWithoutMac(coreBytes: Buffer, slots: readonly KeySlot[]): Buffer {
  const slotBytes = encodeSlots(slots);
  const total = FIXED_PREFIX_BYTES + coreBytes.length + slotBytes.length + HEADER_MAC_BYTES;
  if (total > MAX_HEADER_BYTES) throw new MalformedEnvelopeError('header exceeds 1 MiB');
  const prefix = Buffer.alloc(FIXED_PREFIX_BYTES);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(total, 4);
  return Buffer.concat([prefix, coreBytes, slotBytes]);
}

/** Domain-separated digest of the core, used as the C2SP context and in slot AADs. */
export function coreDigest(coreBytes: Uint8Array): Buffer {
  return createHash('sha256').update('warden/envelope/v1 core\0').update(coreBytes).digest();
}

/** Cursor over a bounded buffer: every read is checked, so declared lengths never drive an allocation. */
class Reader {
  readonly buf: Buffer;
  pos: number;
  constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }
  take(n: number, what: string): Buffer {
    if (n > this.buf.length - this.pos) throw new MalformedEnvelopeError(`header ends inside ${what}`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u8(what: string): number {
    return this.take(1, what).readUInt8(0);
  }
  u16(what: string): number {
    return this.take(2, what).readUInt16BE(0);
  }
  text(n: number, what: string): string {
    try {
      return strictUtf8.decode(this.take(n, what));
    } catch (err) {
      if (err instanceof MalformedEnvelopeError) throw err;
      throw new MalformedEnvelopeError(`${what} is not valid UTF-8`);
    }
  }
}

/**
 * The declared total header length, from the first 8 bytes, so a reader knows how much to read. Returns
 * undefined when fewer than 8 bytes are given.
 */
export function declaredHeaderLength(prefix: Buffer): number | undefined {
  if (prefix.length < FIXED_PREFIX_BYTES) return undefined;
  if (!prefix.subarray(0, 4).equals(MAGIC))
    throw new MalformedEnvelopeError('not a Warden envelope (bad magic)');
  const total = prefix.readUInt32BE(4);
  if (total > MAX_HEADER_BYTES) throw new MalformedEnvelopeError('declared header length exceeds 1 MiB');
  if (total < MIN_HEADER_BYTES) throw new MalformedEnvelopeError('declared header length too small');
  return total;
}

/** Parses a complete header (`buf` may continue with payload bytes). Structure only: nothing is verified here. */
export function parseHeader(buf: Buffer): ParsedHeader {
  const total = declaredHeaderLength(buf);
  if (total === undefined) throw new MalformedEnvelopeError('header ends inside the fixed prefix');
  if (buf.length < total) throw new MalformedEnvelopeError('header ends before its declared length');
  const header = buf.subarray(0, total);
  const body = header.subarray(0, total - HEADER_MAC_BYTES);
  const r = new Reader(body, FIXED_PREFIX_BYTES);
  const coreStart = r.pos;
  const version = r.u8('version');
  if (version !== FORMAT_VERSION) throw new MalformedEnvelopeError(`unsupported format version ${version}`);
  const suite = r.u8('suite');
  if (suite !== SUITE_AES256GCM_HKDFSHA512)
    throw new MalformedEnvelopeError(`unsupported algorithm suite ${suite}`);
  const chunkExponent = r.u8('chunk size');
  if (chunkExponent < MIN_CHUNK_EXPONENT || chunkExponent > MAX_CHUNK_EXPONENT)
    throw new MalformedEnvelopeError('chunk size out of range');
  const flags = r.u8('flags');
  if ((flags & ~FLAG_HAS_LENGTH) !== 0) throw new MalformedEnvelopeError('unknown flags set');
  const rawLength = r.take(8, 'plaintext length').readBigUInt64BE(0);
  let plaintextLength: number | undefined;
  if (flags & FLAG_HAS_LENGTH) {
    if (rawLength > BigInt(MAX_PLAINTEXT_LENGTH))
      throw new MalformedEnvelopeError('plaintext length out of range');
    plaintextLength = Number(rawLength);
  } else if (rawLength !== 0n) {
    throw new MalformedEnvelopeError('plaintext length set without its flag');
  }
  const contextCount = r.u16('context count');
  if (contextCount > MAX_CONTEXT_ENTRIES) throw new MalformedEnvelopeError('too many context entries');
  const context: Record<string, string> = Object.create(null) as Record<string, string>;
  let previousKey: Buffer | undefined;
  for (let i = 0; i < contextCount; i++) {
    const keyLength = r.u16('context key length');
    if (keyLength === 0 || keyLength > MAX_CONTEXT_KEY_BYTES)
      throw new MalformedEnvelopeError('context key length out of range');
    const keyStart = r.pos;
    const key = r.text(keyLength, 'context key');
    const keyBytes = body.subarray(keyStart, keyStart + keyLength);
    if (previousKey !== undefined && Buffer.compare(previousKey, keyBytes) >= 0) {
      throw new MalformedEnvelopeError('context keys not in strictly ascending order');
    }
    previousKey = keyBytes;
    const valueLength = r.u16('context value length');
    if (valueLength > MAX_CONTEXT_VALUE_BYTES) throw new MalformedEnvelopeError('context value too long');
    context[key] = r.text(valueLength, 'context value');
  }
  const coreBytes = Buffer.from(body.subarray(coreStart, r.pos));
  const slotCount = r.u8('slot count');
  if (slotCount < 1 || slotCount > MAX_SLOTS) throw new MalformedEnvelopeError('slot count out of range');
  const slots: KeySlot[] = [];
  for (let i = 0; i < slotCount; i++) {
    const code = r.u8('slot type');
    const type = (Object.keys(SLOT_TYPE_CODES) as SlotType[]).find((t) => SLOT_TYPE_CODES[t] === code);
    if (type === undefined) throw new MalformedEnvelopeError(`unknown key slot type ${code}`);
    const refLength = r.u16('slot reference length');
    if (refLength === 0 || refLength > MAX_SLOT_REF_BYTES)
      throw new MalformedEnvelopeError('slot reference length out of range');
    const ref = r.text(refLength, 'slot reference');
    const wrappedLength = r.u16('wrapped key length');
    if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_KEY_BYTES)
      throw new MalformedEnvelopeError('wrapped key length out of range');
    slots.push({ type, ref, wrappedKey: Buffer.from(r.take(wrappedLength, 'wrapped key')) });
  }
  if (r.pos !== body.length) throw new MalformedEnvelopeError('unexpected bytes before the header MAC');
  return {
    chunkExponent,
    plaintextLength,
    context: Object.freeze({ ...context }),
    slots,
    headerLength: total,
    coreBytes,
    macInput: Buffer.from(body),
    mac: Buffer.from(header.subarray(total - HEADER_MAC_BYTES)),
  };
}

export function slotLabel(slot: Pick<KeySlot, 'type' | 'ref'>): string {
  return `${slot.type}:${slot.ref}`;
}

/**
 * AAD binding a wrapped data key to its slot and to the header core, so a slot cannot be moved to another
 * envelope or relabelled: "warden/envelope/v1 slot" 0x00 || type code || u16 ref length || ref || core digest.
 */
export function slotAad(slot: Pick<KeySlot, 'type' | 'ref'>, coreBytes: Uint8Array): Buffer {
  const ref = Buffer.from(utf8.encode(slot.ref));
  return Buffer.concat([
    Buffer.from('warden/envelope/v1 slot\0', 'ascii'),
    Buffer.of(SLOT_TYPE_CODES[slot.type]),
    u16(ref.length),
    ref,
    coreDigest(coreBytes),
  ]);
}
