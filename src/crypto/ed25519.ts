import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import {
  AsymmetricPrivateKey,
  AsymmetricPublicKey,
  checkAsymmetric,
  importRawPrivate,
  importRawPublic,
  keyObjectOf,
  requireKey,
} from './keys.ts';

/**
 * Ed25519 (RFC 8032, pure, no context). Verification relies on OpenSSL, which rejects malleable signatures
 * (S >= L) and malformed encodings, so no check of its own is added; the Wycheproof test holds OpenSSL to that.
 */
export const ED25519_SIGNATURE_BYTES = 64;

export class Ed25519PublicKey extends AsymmetricPublicKey {
  readonly purpose = 'ed25519';

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'public', 'ed25519', 'an Ed25519'));
  }

  /** The 32-byte encoded point A of RFC 8032 §5.1.5. */
  static fromRaw(bytes: Uint8Array): Ed25519PublicKey {
    return new Ed25519PublicKey(importRawPublic(bytes, 'ed25519'));
  }

  toRaw(): Buffer {
    return keyObjectOf(this).export({ format: 'raw-public' });
  }
}

export class Ed25519PrivateKey extends AsymmetricPrivateKey {
  readonly purpose = 'ed25519';

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'private', 'ed25519', 'an Ed25519'));
  }

  static generate(): Ed25519PrivateKey {
    return new Ed25519PrivateKey(generateKeyPairSync('ed25519').privateKey);
  }

  /** The 32-byte private key (seed) of RFC 8032 §5.1.5. */
  static fromRaw(seed: Uint8Array): Ed25519PrivateKey {
    return new Ed25519PrivateKey(importRawPrivate(seed, 'ed25519'));
  }

  publicKey(): Ed25519PublicKey {
    return new Ed25519PublicKey(createPublicKey(keyObjectOf(this)));
  }
}

export function ed25519Sign(key: Ed25519PrivateKey, message: Uint8Array): Buffer {
  return sign(null, message, keyObjectOf(requireKey(key, Ed25519PrivateKey, 'an Ed25519PrivateKey')));
}

/** True only for a valid signature; a malformed signature is just invalid, not an exception. */
export function ed25519Verify(key: Ed25519PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
  const keyObject = keyObjectOf(requireKey(key, Ed25519PublicKey, 'an Ed25519PublicKey'));
  if (signature.byteLength !== ED25519_SIGNATURE_BYTES) return false;
  return verify(null, message, keyObject, signature);
}
