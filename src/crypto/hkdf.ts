import { createHmac, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import { wipe } from './bytes.ts';
import { InvalidInputError, InvalidKeyError } from './errors.ts';
import { HkdfInputKey, keyObjectOf, requireKey, type SecretKey, type SecretKeyType } from './keys.ts';

/**
 * HKDF (RFC 5869) with SHA-256 or SHA-512. Parameters are named (an options object) because salt and info are
 * both byte strings and swapping them is a silent, classic mistake.
 */
export type HkdfHash = 'sha256' | 'sha512';

export interface HkdfParams {
  /** Defaults to SHA-256. */
  readonly hash?: HkdfHash;
  /** Optional; empty means HashLen zero bytes (RFC 5869 §2.2). */
  readonly salt?: Uint8Array;
  /** Context binding: what the output is for. node:crypto caps it at 1024 bytes, and so does the expand path. */
  readonly info: Uint8Array;
  /** Output length in bytes, 1 to 255 * HashLen. */
  readonly length: number;
}

export const HKDF_MAX_INFO_BYTES = 1024;

const HASH_BYTES: Readonly<Record<HkdfHash, number>> = { sha256: 32, sha512: 64 };

interface Hash {
  readonly name: HkdfHash;
  readonly bytes: number;
}

function resolveHash(hash: HkdfHash | undefined): Hash {
  const name = hash ?? 'sha256';
  const bytes = HASH_BYTES[name] as number | undefined;
  if (bytes === undefined) throw new InvalidInputError('HKDF hash must be sha256 or sha512');
  return { name, bytes };
}

function checkExpandParams(hash: Hash, info: Uint8Array, length: number): void {
  const maxLength = 255 * hash.bytes;
  if (!Number.isSafeInteger(length) || length < 1 || length > maxLength) {
    throw new InvalidInputError(`HKDF output length must be an integer from 1 to ${maxLength}`);
  }
  if (info.byteLength > HKDF_MAX_INFO_BYTES) {
    throw new InvalidInputError(`HKDF info must be at most ${HKDF_MAX_INFO_BYTES} bytes`);
  }
}

function hkdfKeyObject(key: HkdfInputKey): KeyObject {
  return keyObjectOf(requireKey(key, HkdfInputKey, 'an HkdfInputKey'));
}

/** HKDF-Extract then HKDF-Expand, in one node:crypto call. */
export function hkdf(ikm: HkdfInputKey, params: HkdfParams): Buffer {
  const ikmObject = hkdfKeyObject(ikm);
  const hash = resolveHash(params.hash);
  checkExpandParams(hash, params.info, params.length);
  const salt = params.salt ?? new Uint8Array(0);
  return Buffer.from(hkdfSync(hash.name, ikmObject, salt, params.info, params.length));
}

/** HKDF-Extract (RFC 5869 §2.2). The PRK stays opaque: it is returned as a key that only HKDF-Expand accepts. */
export function hkdfExtract(
  ikm: HkdfInputKey,
  params: { readonly hash?: HkdfHash; readonly salt?: Uint8Array },
): HkdfInputKey {
  const ikmBytes = hkdfKeyObject(ikm).export();
  const hash = resolveHash(params.hash);
  // HMAC zero-pads its key to the block size, so an empty salt is exactly the HashLen zero bytes of §2.2.
  const prk = createHmac(hash.name, params.salt ?? new Uint8Array(0))
    .update(ikmBytes)
    .digest();
  wipe(ikmBytes);
  try {
    return new HkdfInputKey(createSecretKey(prk));
  } finally {
    wipe(prk);
  }
}

/**
 * HKDF-Expand only (RFC 5869 §2.3), for a PRK from `hkdfExtract` or an input key that is already uniformly random
 * (§3.3). node:crypto's hkdf always runs Extract first, so Expand is written out over HMAC here.
 */
export function hkdfExpand(
  prk: HkdfInputKey,
  params: { readonly hash?: HkdfHash; readonly info: Uint8Array; readonly length: number },
): Buffer {
  const prkObject = hkdfKeyObject(prk);
  const hash = resolveHash(params.hash);
  checkExpandParams(hash, params.info, params.length);
  if ((prkObject.symmetricKeySize ?? 0) < hash.bytes) {
    throw new InvalidKeyError('HKDF-Expand needs a PRK of at least HashLen bytes');
  }
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let counter = 1; blocks.length * hash.bytes < params.length; counter++) {
    previous = createHmac(hash.name, prkObject)
      .update(previous)
      .update(params.info)
      .update(Uint8Array.of(counter))
      .digest();
    blocks.push(previous);
  }
  const okm = Buffer.concat(blocks);
  const output = Buffer.from(okm.subarray(0, params.length));
  wipe(okm);
  for (const block of blocks) wipe(block);
  return output;
}

/**
 * Derives a typed key with HKDF (Extract then Expand) so the output never exists as loose bytes outside this
 * function. `info` should name the purpose; deriving two purposes from one input needs two distinct infos.
 */
export function hkdfDeriveKey<K extends SecretKey>(
  ikm: HkdfInputKey,
  params: { readonly hash?: HkdfHash; readonly salt?: Uint8Array; readonly info: Uint8Array },
  type: SecretKeyType<K>,
): K {
  const okm = hkdf(ikm, { ...params, length: type.defaultByteLength });
  try {
    return type.fromBytes(okm);
  } finally {
    wipe(okm);
  }
}
