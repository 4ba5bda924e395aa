import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { wipe } from './bytes.ts';
import { DecryptionError, InvalidInputError } from './errors.ts';
import { keyObjectOf, requireKey, SecretKey, WrappingKey, type SecretKeyType } from './keys.ts';

/**
 * AES-256 key wrap: RFC 3394 (KW) and RFC 5649 (KWP, with padding), through OpenSSL's `id-aes256-wrap` and
 * `id-aes256-wrap-pad`. Key wrap is deterministic and needs no nonce; its integrity check is the 64-bit initial
 * value, so every unwrap failure is the single `DecryptionError`.
 *
 * OpenSSL specifics: the cipher takes the RFC's initial value as its "IV" (passing it checks the default one,
 * A6A6A6A6A6A6A6A6 for KW and the A65959A6 prefix for KWP), and a wrap is one-shot: a single `update`. Lengths
 * are checked here, not left to OpenSSL, because OpenSSL "wraps" an empty input to an empty output and "unwraps"
 * an empty ciphertext without error, and reports other bad lengths as an unrelated state error.
 */
const KW = { cipher: 'id-aes256-wrap', iv: Buffer.from('a6a6a6a6a6a6a6a6', 'hex') } as const;
const KWP = { cipher: 'id-aes256-wrap-pad', iv: Buffer.from('a65959a6', 'hex') } as const;

/** OpenSSL's CRYPTO128_WRAP_MAX: larger inputs are refused by the library, so they are refused up front. */
const MAX_WRAP_INPUT_BYTES = 2 ** 31;

type Mode = typeof KW | typeof KWP;

function wrappingKeyObject(kek: WrappingKey): KeyObject {
  return keyObjectOf(requireKey(kek, WrappingKey, 'a WrappingKey (AES-256 key wrap)'));
}

function wrapWith(mode: Mode, kek: KeyObject, data: Uint8Array): Buffer {
  const cipher = createCipheriv(mode.cipher, kek, mode.iv);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

function unwrapWith(mode: Mode, kek: KeyObject, wrapped: Uint8Array): Buffer {
  const decipher = createDecipheriv(mode.cipher, kek, mode.iv);
  try {
    // The single update unwraps and checks integrity, and throws without output when the check fails.
    return Buffer.concat([decipher.update(wrapped), decipher.final()]);
  } catch {
    throw new DecryptionError();
  }
}

/** RFC 3394 wrap. The input must be a multiple of 8 bytes and at least 16 (two 64-bit blocks, §2). */
export function aesKeyWrap(kek: WrappingKey, keyData: Uint8Array): Buffer {
  const kekObject = wrappingKeyObject(kek);
  const n = keyData.byteLength;
  if (n < 16 || n % 8 !== 0 || n > MAX_WRAP_INPUT_BYTES) {
    throw new InvalidInputError('AES-KW input must be a multiple of 8 bytes, at least 16');
  }
  return wrapWith(KW, kekObject, keyData);
}

/** RFC 3394 unwrap. Wrong lengths, a wrong key and a modified wrapping all throw `DecryptionError`. */
export function aesKeyUnwrap(kek: WrappingKey, wrapped: Uint8Array): Buffer {
  const kekObject = wrappingKeyObject(kek);
  const n = wrapped.byteLength;
  if (n < 24 || n % 8 !== 0 || n > MAX_WRAP_INPUT_BYTES + 8) throw new DecryptionError();
  return unwrapWith(KW, kekObject, wrapped);
}

/** RFC 5649 wrap with padding: any input of 1 byte or more. */
export function aesKeyWrapPadded(kek: WrappingKey, keyData: Uint8Array): Buffer {
  const kekObject = wrappingKeyObject(kek);
  const n = keyData.byteLength;
  if (n < 1 || n > MAX_WRAP_INPUT_BYTES) throw new InvalidInputError('AES-KWP input must not be empty');
  return wrapWith(KWP, kekObject, keyData);
}

/** RFC 5649 unwrap. Wrong lengths, a wrong key, a modified wrapping and bad padding all throw `DecryptionError`. */
export function aesKeyUnwrapPadded(kek: WrappingKey, wrapped: Uint8Array): Buffer {
  const kekObject = wrappingKeyObject(kek);
  const n = wrapped.byteLength;
  if (n < 16 || n % 8 !== 0 || n > MAX_WRAP_INPUT_BYTES + 8) throw new DecryptionError();
  return unwrapWith(KWP, kekObject, wrapped);
}

/**
 * Wraps a typed secret key (RFC 5649, so keys of any length fit) without its bytes ever leaving this module. The
 * purpose is not bound into the wrapping: the caller states it again in `unwrapKey`, so store it beside the
 * wrapped key, or use a distinct `WrappingKey` per purpose.
 */
export function wrapKey(kek: WrappingKey, key: SecretKey): Buffer {
  const bytes = keyObjectOf(requireKey(key, SecretKey, 'a SecretKey')).export();
  try {
    return aesKeyWrapPadded(kek, bytes);
  } finally {
    wipe(bytes);
  }
}

/** Unwraps the output of `wrapKey` into a key of the given class, e.g. `unwrapKey(kek, wrapped, AeadKey)`. */
export function unwrapKey<K extends SecretKey>(
  kek: WrappingKey,
  wrapped: Uint8Array,
  type: SecretKeyType<K>,
): K {
  const bytes = aesKeyUnwrapPadded(kek, wrapped);
  try {
    return type.fromBytes(bytes);
  } finally {
    wipe(bytes);
  }
}
