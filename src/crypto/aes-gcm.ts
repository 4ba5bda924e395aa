import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { concatBytes, wipe } from './bytes.ts';
import { DecryptionError, InvalidInputError } from './errors.ts';
import { AeadKey, keyObjectOf, requireKey } from './keys.ts';
import { publicNonce } from './random.ts';

/**
 * AES-256-GCM with a 96-bit random nonce and a full 128-bit tag. The sealed form is nonce || ciphertext || tag.
 * Nonces are never chosen by callers: a repeated nonce under GCM reveals the XOR of two plaintexts and lets an
 * attacker forge tags. With random nonces, NIST SP 800-38D §8.3 limits one key to 2^32 `seal` calls; rotate keys
 * well before that.
 */
export const AES_GCM_NONCE_BYTES = 12;
export const AES_GCM_TAG_BYTES = 16;
/** Bytes `seal` adds to the plaintext. */
export const AES_GCM_OVERHEAD_BYTES = AES_GCM_NONCE_BYTES + AES_GCM_TAG_BYTES;
/** GCM's per-message limit (SP 800-38D: 2^39 - 256 bits). */
export const AES_GCM_MAX_PLAINTEXT_BYTES = 2 ** 36 - 32;

const ALGORITHM = 'aes-256-gcm';

function aeadKeyObject(key: AeadKey): KeyObject {
  return keyObjectOf(requireKey(key, AeadKey, 'an AeadKey (AES-256-GCM)'));
}

function encrypt(
  key: KeyObject,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array | undefined,
): Buffer {
  if (plaintext.byteLength > AES_GCM_MAX_PLAINTEXT_BYTES) {
    throw new InvalidInputError('plaintext exceeds the AES-GCM message limit');
  }
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: AES_GCM_TAG_BYTES });
  if (aad !== undefined) cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  return concatBytes(body, tail, cipher.getAuthTag());
}

/** Encrypts under a fresh random nonce. Returns nonce(12) || ciphertext || tag(16). */
export function seal(key: AeadKey, plaintext: Uint8Array, aad?: Uint8Array): Buffer {
  const keyObject = aeadKeyObject(key);
  const nonce = publicNonce(AES_GCM_NONCE_BYTES);
  return concatBytes(nonce, encrypt(keyObject, nonce, plaintext, aad));
}

/**
 * Authenticates and decrypts the output of `seal`. Every failure (truncated input, wrong key, wrong AAD, any
 * modified byte) throws the same `DecryptionError`; no plaintext is released unless the tag verifies.
 */
export function open(key: AeadKey, sealed: Uint8Array, aad?: Uint8Array): Buffer {
  const keyObject = aeadKeyObject(key);
  if (sealed.byteLength < AES_GCM_OVERHEAD_BYTES) throw new DecryptionError();
  const tagStart = sealed.byteLength - AES_GCM_TAG_BYTES;
  // Without authTagLength, Node accepts tags as short as 4 bytes in setAuthTag (deprecated, DEP0182).
  const decipher = createDecipheriv(ALGORITHM, keyObject, sealed.subarray(0, AES_GCM_NONCE_BYTES), {
    authTagLength: AES_GCM_TAG_BYTES,
  });
  decipher.setAuthTag(sealed.subarray(tagStart));
  if (aad !== undefined) decipher.setAAD(aad);
  const plaintext = decipher.update(sealed.subarray(AES_GCM_NONCE_BYTES, tagStart));
  try {
    decipher.final();
  } catch {
    wipe(plaintext);
    throw new DecryptionError();
  }
  return plaintext;
}

/**
 * TEST ONLY: encryption under a caller-chosen nonce, returning ciphertext || tag, so that known-answer vectors
 * can be checked. Not exported from index.ts; any production use risks nonce reuse, which breaks GCM entirely.
 * The nonce must still be 96 bits: other sizes are not representable in the sealed format.
 */
export function aesGcmEncryptWithNonceForTesting(
  key: AeadKey,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad?: Uint8Array,
): Buffer {
  const keyObject = aeadKeyObject(key);
  if (nonce.byteLength !== AES_GCM_NONCE_BYTES) throw new InvalidInputError('AES-GCM nonce must be 12 bytes');
  return encrypt(keyObject, nonce, plaintext, aad);
}
